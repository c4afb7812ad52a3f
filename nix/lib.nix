# The flake's `lib`: turns fleet.json (written by `venue up`) into one NixOS
# system per rented host.
#
#   lib.mkFleet { fleet, extraModules ? [ ], eventFile ? null }
#     -> { <host name> = <nixosSystem>; ... }
#
# `fleet` is fleet.json already parsed. The agent builds a host's closure
# with (one line):
#
#   nix build --impure --expr '((builtins.getFlake "/abs/path/to/venue").lib.mkFleet {
#     fleet = builtins.fromJSON (builtins.readFile /abs/path/to/fleet.json);
#   }).lpc-2020-bbb-1.config.system.build.toplevel'
#
# so the attribute path is `<host>.config.system.build.toplevel`.
#
# Rented hosts ("static": false) get the Hetzner profile. A static host (a
# vpsAdminOS container, a home server) gets a system only when its fleet
# entries carry "configuration": the absolute path of its own NixOS module
# (profile, network), to which its roles are added; otherwise its owner
# deploys it with nixos-rebuild. All hosts count for the wiring: where TURN,
# the Jitsi main host and the BBB servers are.
#
# Uses builtins only, so that it can be evaluated without nixpkgs
# (nix/lib-test.nix does, with a stub nixosSystem).
{ nixosSystem, modules }:

let
  inherit (builtins) elem filter foldl' head length listToAttrs map;

  optionalAttrs = cond: attrs: if cond then attrs else { };
in
{
  mkFleet = { fleet, extraModules ? [ ], eventFile ? null }:
    let
      servers = fleet.servers;
      withRole = role: filter (s: s.role == role) servers;
      firstWithRole = role: let l = withRole role; in if l == [ ] then null else head l;
      publicName = s: "${s.name}.${fleet.domain}";
      ipv6 = s: s.ipv6 or null;

      jitsiMain = firstWithRole "jitsi";
      coturn = firstWithRole "coturn";
      bridges = withRole "jvb";

      roleConfig = s: {
        bbb = {
          bbb = {
            enable = true;
            hostName = publicName s;
            externalIPv4 = s.ipv4;
            externalIPv6 = ipv6 s;
          };
        };

        jitsi = {
          jitsi = {
            enable = true;
            hostName = publicName s;
            # Hetzner puts the public address on the interface: no NAT.
            publicAddress = s.ipv4;
            localAddress = s.ipv4;
            bridges.acceptRemote = length bridges > 0;
          };
        };

        jvb = {
          jvb = {
            enable = true;
            mainHost =
              if jitsiMain == null
              then throw "fleet.json: videobridge ${s.name} has no jitsi host to join"
              else publicName jitsiMain;
            hostName = publicName s;
            nickname = s.name;
            publicAddress = s.ipv4;
            localAddress = s.ipv4;
          };
        };

        coturn = {
          coturn = {
            enable = true;
            hostName = publicName s;
          };
        };

        portal = {
          portal = {
            enable = true;
            hostName = publicName s;
            bbbServers = map
              (b: {
                inherit (b) name;
                url = "https://${publicName b}/bigbluebutton/api";
              })
              (withRole "bbb");
          }
          // optionalAttrs (jitsiMain != null) { jitsi.domain = publicName jitsiMain; }
          // optionalAttrs (eventFile != null) { inherit eventFile; };
        };
      }.${s.role} or (throw "fleet.json: server ${s.name} has unknown role ${s.role}");

      hostModule = s: { lib, ... }: {
        nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
        networking.hostName = s.name;
        networking.domain = fleet.domain;
        system.stateVersion = lib.mkDefault "26.05";
        services.venue = {
          domain = fleet.domain;
          hetzner = {
            enable = true;
            ipv6Address = ipv6 s;
          };
        }
        // optionalAttrs (coturn != null) { turn.host = publicName coturn; }
        // roleConfig s;
      };

      rented = filter (s: !(s.static or false)) servers;

      # A static host appears once per role; it is one system.
      staticNames = foldl'
        (names: s: if (s.static or false) && s ? configuration && !(elem s.name names) then names ++ [ s.name ] else names)
        [ ]
        servers;
      staticModule = name:
        let entries = filter (s: s.name == name) servers;
        in { lib, ... }: {
          networking.hostName = lib.mkDefault name;
          networking.domain = lib.mkDefault fleet.domain;
          services.venue = { domain = fleet.domain; }
            // optionalAttrs (coturn != null) { turn.host = publicName coturn; }
            // foldl' (acc: s: acc // roleConfig s) { } entries;
        };
      staticSystem = name: nixosSystem {
        modules = modules ++ [ (staticModule name) (/. + (head (filter (s: s.name == name) servers)).configuration) ] ++ extraModules;
      };
    in
    if !(fleet ? domain) then throw "fleet.json: no domain"
    else
      listToAttrs
        (map
          (s: {
            inherit (s) name;
            value = nixosSystem {
              modules = modules ++ [ (hostModule s) ] ++ extraModules;
            };
          })
          rented
        ++ map (name: { inherit name; value = staticSystem name; }) staticNames);
}
