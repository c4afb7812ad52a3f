# A long-lived venue host: NixOS in a vpsAdminOS container at a hosting
# co-op, running the portal all year and coturn for the event. It is
# deployed with plain `nixos-rebuild switch` on the container (see
# flake.nix beside this file, which adds vpsAdminOS' own guest module), not
# by the agent; the agent's rented servers join it for the event days.
#
# Addresses and names are examples (RFC 5737 / example.org).
{ ... }:

let
  domain = "lpc.example.org";
in
{
  networking.hostName = "lpc-portal";
  networking.domain = domain;
  system.stateVersion = "26.05";

  services.venue = {
    inherit domain;
    acme.email = "noc@${domain}";
    turn.host = "turn.${domain}";

    vpsadminos.enable = true;

    portal = {
      enable = true;
      hostName = "portal.${domain}";
      eventFile = "${../lpc-2020}/event.toml";
      # The rented BigBlueButton servers of the event, as `venue up` names
      # them (<event>-<role>-<n>.<domain>).
      bbbServers = map
        (n: {
          name = "lpc-2020-bbb-${toString n}";
          url = "https://lpc-2020-bbb-${toString n}.${domain}/bigbluebutton/api";
        }) [ 1 2 3 4 ];
    };

    coturn = {
      enable = true;
      hostName = "turn.${domain}";
    };
  };
}
