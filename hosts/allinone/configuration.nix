# A small event on one rented server: portal, Jitsi, BigBlueButton and
# coturn side by side (NixCon 2020's size: a few hundred attendees). Each
# role gets its own name under the event's domain, all pointing at this
# server; secrets are uploaded by the agent to /var/lib/venue/secrets.
#
# Built by the flake as nixosConfigurations.allinone. The addresses are
# documentation addresses (RFC 5737, RFC 3849): replace them.
{ ... }:

let
  domain = "nixcon.example.org";
  ipv4 = "203.0.113.20";
  ipv6 = "2001:db8:20::1";
in
{
  networking.hostName = "nixcon-2020-allinone";
  networking.domain = domain;
  system.stateVersion = "26.05";

  services.venue = {
    inherit domain;
    acme.email = "orga@${domain}";
    turn.host = "turn.${domain}";

    hetzner = {
      enable = true;
      ipv6Address = ipv6;
    };

    portal = {
      enable = true;
      hostName = domain;
      # The whole folder, so the schedule named in event.toml comes along.
      eventFile = "${../nixcon-2020}/event.toml";
      # bbbServers and jitsi are filled in from the roles below.
    };

    jitsi = {
      enable = true;
      hostName = "meet.${domain}";
      publicAddress = ipv4;
      localAddress = ipv4;
      # The portal beside it reads /room-size and /colibri/stats from
      # either of the host's addresses, whichever its public name gives.
      publicAddress6 = ipv6;
    };

    bbb = {
      enable = true;
      hostName = "bbb.${domain}";
      externalIPv4 = ipv4;
      externalIPv6 = ipv6;
    };

    coturn = {
      enable = true;
      hostName = "turn.${domain}";
      # Jitsi's videobridge (10000/udp) and BBB (16384-32768/udp) share the
      # machine: keep TURN's relays above both.
      minPort = 49152;
      maxPort = 65535;
    };
  };
}
