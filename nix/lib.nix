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
# the Jitsi main host and the BBB servers are, and the chat: a `chat` host
# serves `chat.<domain>`, the portal is its OpenID Connect provider and keeps
# its rooms (`[chat]`) through its admin API, which the chat host's nginx
# opens to the portal's addresses only; federation as event.toml's `[chat]
# federation` says (fleet.json's `chat_federation`; off without it).
#
# fleet.json also carries `acme_email` (event.toml's `[tls] email`: every
# host gets it, as nixpkgs' security.acme requires one for per-host
# certificates) and `tls` (true when the agent supplies the one certificate
# for the event's names: hosts then use it instead of per-host ACME).
#
# `eventFile` is copied into the store together with the schedule it names,
# and nothing else of its folder (the agent's state directory, with the
# event's secrets, lives beside event.toml).
#
# Every system's pkgs is made with nix/pkgs-config.nix (jitsi-meet permitted).
#
# Uses builtins only, so that it can be evaluated without nixpkgs
# (nix/lib-test.nix does, with a stub nixosSystem).
{ nixosSystem, modules }:

let
  inherit (builtins) elem filter foldl' head length listToAttrs map;

  optionalAttrs = cond: attrs: if cond then attrs else { };
  hasPrefix = pre: s: builtins.substring 0 (builtins.stringLength pre) s == pre;

  nixpkgsConfig = import ./pkgs-config.nix;
  pkgsModule = { nixpkgs.config = nixpkgsConfig; };

  # event.toml and its schedule (fleet.json's `schedule`, as event.toml
  # names it), in the store: `<store path>/event.toml`. event.toml itself is
  # not read: Nix's fromTOML refuses TOML dates, which `[vote]` uses.
  eventInStore = eventFile: schedule:
    let
      file = toString eventFile;
      dir = dirOf file;
      keep = [ file ] ++ (if schedule == null then [ ] else [ "${dir}/${schedule}" ]);
      copy = builtins.path {
        path = dir;
        name = "venue-event";
        # A kept file, or a folder on the way to one.
        filter = p: type: builtins.any (k: k == p || (type == "directory" && hasPrefix "${p}/" k)) keep;
      };
    in
    if schedule != null && (hasPrefix "/" schedule || builtins.match "(.*/)?\\.\\.(/.*)?" schedule != null)
    then throw "${file}: schedule `${schedule}` must be inside the event's folder to reach the portal"
    else "${copy}/${baseNameOf file}";
in
{
  inherit nixpkgsConfig;

  mkFleet = { fleet, extraModules ? [ ], eventFile ? null }:
    let
      servers = fleet.servers;
      withRole = role: filter (s: s.role == role) servers;
      firstWithRole = role: let l = withRole role; in if l == [ ] then null else head l;
      publicName = s: "${s.name}.${fleet.domain}";
      ipv6 = s: s.ipv6 or null;

      jitsiMain = firstWithRole "jitsi";
      streamOrigin = firstWithRole "stream";
      # Where the audience plays the streams: the edges, else the origin.
      streamServers = if withRole "edge" != [ ] then withRole "edge" else withRole "stream";
      # Where the stages are captured: they push RTMP to the origin.
      stageHosts = filter (s: elem s.role [ "bbb" "jitsi" "jvb" ]) servers;
      coturn = firstWithRole "coturn";
      bridges = withRole "jvb";
      # Who may read the Jitsi hosts' room sizes and bridge load: the portal.
      addresses = s: filter (a: a != null) [ s.ipv4 (ipv6 s) ];
      portalAddresses = builtins.concatMap addresses (withRole "portal");
      # The event's one homeserver, at `chat.<domain>` (its server name is
      # the domain, delegated by the portal); the portal is its login.
      chatHosts = withRole "chat";
      chatName = "chat.${fleet.domain}";
      # event.toml's `[chat] federation`, as the agent writes it to fleet.json.
      chatFederation = fleet.chat_federation or false;

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
            publicAddress6 = ipv6 s;
            bridges.acceptRemote = length bridges > 0;
            statsFrom = portalAddresses;
          };
        };

        jvb = {
          jvb = {
            enable = true;
            mainHost =
              if jitsiMain == null
              then throw "fleet.json: videobridge ${s.name} has no jitsi host to join"
              else publicName jitsiMain;
            # By address: the bridge's nginx needs no DNS to start; the TLS
            # certificate is checked for mainHost.
            xmppAddress =
              if jitsiMain == null
              then throw "fleet.json: videobridge ${s.name} has no jitsi host to join"
              else jitsiMain.ipv4;
            hostName = publicName s;
            nickname = s.name;
            publicAddress = s.ipv4;
            localAddress = s.ipv4;
            publicAddress6 = ipv6 s;
            statsFrom = portalAddresses;
          };
        };

        coturn = {
          coturn = {
            enable = true;
            hostName = publicName s;
            ownAddresses = addresses s;
          };
        };

        # The origin also films the stages (modules/capture.nix) and pushes
        # to itself; the media hosts may push too (an external capture).
        stream = {
          stream.origin = {
            enable = true;
            hostName = publicName s;
            publishFrom = [ "127.0.0.1" ] ++ builtins.concatMap (h: filter (a: a != null) [ h.ipv4 (ipv6 h) ]) stageHosts;
          };
          capture.enable = true;
        };

        edge = {
          stream.edge = {
            enable = true;
            hostName = publicName s;
            origin =
              if streamOrigin == null
              then throw "fleet.json: stream edge ${s.name} has no stream origin to cache"
              else publicName streamOrigin;
          };
        };

        chat = {
          chat =
            if length chatHosts > 1
            then throw "fleet.json: chat servers ${builtins.concatStringsSep ", " (map (c: c.name) chatHosts)}: the event has one homeserver, at ${chatName}"
            else {
              enable = true;
              hostName = chatName;
              serverAliases = [ (publicName s) ];
              # The portal's bot, when it runs elsewhere (beside it: loopback).
              adminFrom = builtins.concatMap addresses (filter (p: p.name != s.name) (withRole "portal"));
              federation.enable = chatFederation;
            };
        };

        portal = {
          portal = {
            enable = true;
            # Attendees find the portal at the event's own name.
            hostName = fleet.domain;
            serverAliases = [ (publicName s) ];
            streamUrls = map (e: "https://${publicName e}/hls") streamServers;
            # The captures run on the origin and push to it locally.
            captureRtmpUrl = if streamOrigin == null then null else "rtmp://127.0.0.1/live";
            bbbServers = map
              (b: {
                inherit (b) name;
                url = "https://${publicName b}/bigbluebutton/api";
              })
              (withRole "bbb");
          }
          // optionalAttrs (jitsiMain != null) {
            jitsi = {
              domain = publicName jitsiMain;
              roomSizeUrl = "https://${publicName jitsiMain}/room-size";
              bridges = map
                (b: { inherit (b) name; statsUrl = "https://${publicName b}/colibri/stats"; })
                ([ jitsiMain ] ++ bridges);
            };
          }
          // optionalAttrs (chatHosts != [ ]) {
            oidc.redirectUri = "https://${chatName}/_synapse/client/oidc/callback";
            matrixHost = chatName;
            # Rooms kept in step; portal.nix's defaults say where Synapse is.
            chat = { };
          }
          // optionalAttrs (eventFile != null) { eventFile = eventInStore eventFile (fleet.schedule or null); };
        };
      }.${s.role} or (throw "fleet.json: server ${s.name} has unknown role ${s.role}");

      # What every host of the event shares: the domain, TURN, TLS. (The
      # address is a default: a static host's own configuration may say.)
      venueShared = lib: {
        domain = fleet.domain;
      }
      // optionalAttrs (coturn != null) { turn.host = publicName coturn; }
      // optionalAttrs (fleet ? acme_email) { acme.email = lib.mkDefault fleet.acme_email; }
      // optionalAttrs (fleet.tls or false) { tls.fromAgent = true; };

      hostModule = s: { lib, ... }: {
        nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
        networking.hostName = s.name;
        networking.domain = fleet.domain;
        system.stateVersion = lib.mkDefault "26.05";
        services.venue = venueShared lib // {
          hetzner = {
            enable = true;
            ipv6Address = ipv6 s;
          };
        }
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
          # Defaults only: the host's own configuration decides.
          nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
          system.stateVersion = lib.mkDefault "26.05";
          networking.hostName = lib.mkDefault name;
          networking.domain = lib.mkDefault fleet.domain;
          services.venue = venueShared lib
            // foldl' (acc: s: acc // roleConfig s) { } entries;
        };
      staticSystem = name: nixosSystem {
        modules = modules ++ [ pkgsModule (staticModule name) (/. + (head (filter (s: s.name == name) servers)).configuration) ] ++ extraModules;
      };
    in
    if !(fleet ? domain) then throw "fleet.json: no domain"
    else
      listToAttrs
        (map
          (s: {
            inherit (s) name;
            value = nixosSystem {
              modules = modules ++ [ pkgsModule (hostModule s) ] ++ extraModules;
            };
          })
          rented
        ++ map (name: { inherit name; value = staticSystem name; }) staticNames);
}
