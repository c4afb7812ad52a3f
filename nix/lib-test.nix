# Evaluates nix/lib.nix's mkFleet without nixpkgs: nixosSystem is a stub
# that returns its arguments, and the host module gets a stub lib. Run:
#   nix-instantiate --eval --strict --read-write-mode nix/lib-test.nix
# It throws on the first failed check and otherwise prints the host names.
let
  fleetLib = import ./lib.nix {
    nixosSystem = args: args;
    modules = [ "venue-modules" ];
  };

  fleet = {
    event = "lpc-2020";
    domain = "lpc.example.org";
    acme_email = "noc@lpc.example.org";
    servers = [
      { name = "lpc-2020-bbb-1"; role = "bbb"; server_type = "ccx33"; location = "fsn1"; ipv4 = "203.0.113.7"; ipv6 = "2001:db8::1"; static = false; }
      { name = "lpc-2020-bbb-2"; role = "bbb"; server_type = "ccx33"; location = "fsn1"; ipv4 = "203.0.113.8"; ipv6 = "2001:db8:1::1"; static = false; }
      { name = "lpc-2020-jitsi-1"; role = "jitsi"; server_type = "cpx31"; location = "fsn1"; ipv4 = "203.0.113.9"; ipv6 = "2001:db8:2::1"; static = false; }
      { name = "lpc-2020-jvb-1"; role = "jvb"; server_type = "cpx31"; location = "fsn1"; ipv4 = "203.0.113.10"; ipv6 = "2001:db8:3::1"; static = false; }
      { name = "lpc-2020-coturn-1"; role = "coturn"; server_type = "cx22"; location = "fsn1"; ipv4 = "203.0.113.11"; ipv6 = "2001:db8:4::1"; static = false; }
      { name = "lpc-2020-stream-1"; role = "stream"; server_type = "cx33"; location = "fsn1"; ipv4 = "203.0.113.12"; ipv6 = "2001:db8:6::1"; static = false; }
      { name = "lpc-2020-edge-1"; role = "edge"; server_type = "cx33"; location = "fsn1"; ipv4 = "203.0.113.13"; ipv6 = "2001:db8:7::1"; static = false; }
      { name = "lpc-2020-chat-1"; role = "chat"; server_type = "cx22"; location = "fsn1"; ipv4 = "203.0.113.14"; ipv6 = "2001:db8:8::1"; static = false; }
      { name = "lpc-2020-portal-1"; role = "portal"; server_type = "cx22"; location = "fsn1"; ipv4 = "198.51.100.2"; ipv6 = "2001:db8:5::1"; static = true; }
    ];
  };

  hosts = fleetLib.mkFleet { inherit fleet; extraModules = [ "extra" ]; eventFile = "/abs/event.toml"; };

  stubLib = { mkDefault = v: v; };
  # modules = [ venue's modules, the pkgs config, the host's module, extraModules ]
  hostConfig = name: (builtins.elemAt hosts.${name}.modules 2) { lib = stubLib; };
  venue = name: (hostConfig name).services.venue;

  check = cond: msg: if cond then true else throw "lib-test: ${msg}";

  # The portal is static: compute its configuration through a fleet where it is not.
  portalFleet = fleet // {
    servers = map (s: s // { static = false; }) fleet.servers;
  };
  portal = ((builtins.elemAt (fleetLib.mkFleet { fleet = portalFleet; }).lpc-2020-portal-1.modules 2) { lib = stubLib; }).services.venue.portal;

  # The portal's event file reaches the store with its schedule and nothing
  # else of its folder (the agent keeps the event's secrets beside it).
  portalWith = event: schedule: ((builtins.elemAt (fleetLib.mkFleet { fleet = portalFleet // { inherit schedule; }; eventFile = event; }).lpc-2020-portal-1.modules 2) { lib = stubLib; }).services.venue.portal.eventFile;
  nixconEvent = portalWith ../hosts/nixcon-2020/event.toml "schedule.json";
  testbedEvent = portalWith (toString ../hosts/testbed/event.toml) null;
  # TOML dates (`[vote] opens`), which Nix's fromTOML refuses: mkFleet must not parse event.toml.
  datedEvent = portalWith ./fixtures/dated/event.toml null;
  filesBeside = f: builtins.attrNames (builtins.readDir (dirOf f));

  # With the agent's certificate.
  tlsFleet = fleet // { tls = true; };
  tlsVenue = ((builtins.elemAt (fleetLib.mkFleet { fleet = tlsFleet; }).lpc-2020-bbb-1.modules 2) { lib = stubLib; }).services.venue;

  # A static host with its own configuration, holding two roles: one system.
  withStatic = fleet // {
    servers = fleet.servers ++ [
      { name = "coop"; role = "portal"; server_type = "static"; location = "static"; ipv4 = "192.0.2.5"; ipv6 = null; static = true; configuration = "/etc/coop/configuration.nix"; }
      { name = "coop"; role = "coturn"; server_type = "static"; location = "static"; ipv4 = "192.0.2.5"; ipv6 = null; static = true; configuration = "/etc/coop/configuration.nix"; }
    ];
  };
  staticHosts = fleetLib.mkFleet { fleet = withStatic; };
  coop = (builtins.elemAt staticHosts.coop.modules 2) { lib = stubLib; };
  pkgsConfig = (builtins.elemAt hosts.lpc-2020-bbb-1.modules 1).nixpkgs.config;

  # Without a chat host the portal is no OIDC provider; with two, mkFleet refuses.
  noChatFleet = portalFleet // { servers = builtins.filter (s: s.role != "chat") portalFleet.servers; };
  noChatPortal = ((builtins.elemAt (fleetLib.mkFleet { fleet = noChatFleet; }).lpc-2020-portal-1.modules 2) { lib = stubLib; }).services.venue.portal;
  twoChats = fleet // {
    servers = fleet.servers ++ [
      { name = "lpc-2020-chat-2"; role = "chat"; server_type = "cx22"; location = "fsn1"; ipv4 = "203.0.113.15"; ipv6 = null; static = false; }
    ];
  };
  twoChatsVenue = ((builtins.elemAt (fleetLib.mkFleet { fleet = twoChats; }).lpc-2020-chat-1.modules 2) { lib = stubLib; }).services.venue;

  # The chat host's settings with fleet.json's extra fields.
  chatWith = extra:
    let hosts' = fleetLib.mkFleet { fleet = fleet // extra; };
    in ((builtins.elemAt hosts'.lpc-2020-chat-1.modules 2) { lib = stubLib; }).services.venue.chat;
  federated = chatWith { chat_federation = true; };
  # A static host with the portal and the chat: the bot uses loopback.
  together = fleet // {
    servers = builtins.filter (s: s.role != "portal" && s.role != "chat") fleet.servers ++ [
      { name = "coop"; role = "portal"; server_type = "static"; location = "static"; ipv4 = "192.0.2.5"; ipv6 = null; static = true; configuration = "/etc/coop/configuration.nix"; }
      { name = "coop"; role = "chat"; server_type = "static"; location = "static"; ipv4 = "192.0.2.5"; ipv6 = null; static = true; configuration = "/etc/coop/configuration.nix"; }
    ];
  };
  togetherVenue = ((builtins.elemAt (fleetLib.mkFleet { fleet = together; }).coop.modules 2) { lib = stubLib; }).services.venue;

  checks = [
    (check (staticHosts ? coop && !(staticHosts ? lpc-2020-portal-1)) "a static host gets a system only with a configuration")
    (check (builtins.elemAt staticHosts.coop.modules 3 == /etc/coop/configuration.nix) "its own configuration is imported")
    (check (coop.nixpkgs.hostPlatform == "x86_64-linux" && coop.system.stateVersion == "26.05") "a static host gets platform and state version defaults")
    (check (coop.services.venue.acme.email == "noc@lpc.example.org") "a static host gets the ACME address")
    (check (coop.services.venue.portal.enable && coop.services.venue.coturn.enable) "both of its roles")
    (check (!(coop.services.venue ? hetzner)) "no cloud profile on a static host")
    (check (builtins.attrNames hosts == [ "lpc-2020-bbb-1" "lpc-2020-bbb-2" "lpc-2020-chat-1" "lpc-2020-coturn-1" "lpc-2020-edge-1" "lpc-2020-jitsi-1" "lpc-2020-jvb-1" "lpc-2020-stream-1" ]) "static hosts are left out")
    (check ((venue "lpc-2020-stream-1").stream.origin.publishFrom == [ "127.0.0.1" "203.0.113.7" "2001:db8::1" "203.0.113.8" "2001:db8:1::1" "203.0.113.9" "2001:db8:2::1" "203.0.113.10" "2001:db8:3::1" ]) "the origin itself (its captures) and the stages' hosts, and only they, push to the origin")
    (check ((venue "lpc-2020-stream-1").capture.enable && !((venue "lpc-2020-edge-1") ? capture)) "the origin films the stages, the edge does not")
    (check ((venue "lpc-2020-edge-1").stream.edge.origin == "lpc-2020-stream-1.lpc.example.org") "the edge caches the origin")
    (check (let m = hosts.lpc-2020-bbb-1.modules; in builtins.length m == 4 && builtins.head m == "venue-modules" && builtins.elemAt m 3 == "extra") "module order")
    (check (pkgsConfig.allowInsecurePredicate { pname = "jitsi-meet"; } && !(pkgsConfig.allowInsecurePredicate { pname = "openssl"; })) "pkgs permit jitsi-meet, and only it")
    (check ((venue "lpc-2020-bbb-1").acme.email == "noc@lpc.example.org") "every host gets the ACME address")
    (check (!((venue "lpc-2020-bbb-1") ? tls) && tlsVenue.tls.fromAgent) "the agent's certificate only when fleet.json says so")
    (check (builtins.substring 0 (builtins.stringLength builtins.storeDir) nixconEvent == builtins.storeDir && baseNameOf nixconEvent == "event.toml") "the event file is a store path")
    (check (filesBeside nixconEvent == [ "event.toml" "schedule.json" ]) "the schedule travels with the event file")
    (check (filesBeside testbedEvent == [ "event.toml" ]) "nothing else of the event's folder does")
    (check (baseNameOf datedEvent == "event.toml") "an event file with TOML dates reaches the store unparsed")
    (check ((hostConfig "lpc-2020-bbb-1").networking.hostName == "lpc-2020-bbb-1") "host name")
    (check ((venue "lpc-2020-bbb-1").bbb.hostName == "lpc-2020-bbb-1.lpc.example.org") "bbb public name")
    (check ((venue "lpc-2020-bbb-2").bbb.externalIPv4 == "203.0.113.8") "bbb address")
    (check ((venue "lpc-2020-bbb-1").hetzner.ipv6Address == "2001:db8::1") "ipv6 address")
    (check ((venue "lpc-2020-bbb-1").turn.host == "lpc-2020-coturn-1.lpc.example.org") "turn host")
    (check ((venue "lpc-2020-jitsi-1").jitsi.bridges.acceptRemote) "jitsi accepts the extra bridge")
    (check ((venue "lpc-2020-jvb-1").jvb.mainHost == "lpc-2020-jitsi-1.lpc.example.org") "jvb joins the main host")
    (check ((venue "lpc-2020-jvb-1").jvb.nickname == "lpc-2020-jvb-1") "jvb nickname")
    (check ((venue "lpc-2020-coturn-1").coturn.hostName == "lpc-2020-coturn-1.lpc.example.org") "coturn name")
    (check (portal.hostName == "lpc.example.org" && portal.serverAliases == [ "lpc-2020-portal-1.lpc.example.org" ]) "the portal at the event's name")
    (check (portal.streamUrls == [ "https://lpc-2020-edge-1.lpc.example.org/hls" ]) "the audience plays the streams from the edges")
    (check (portal.captureRtmpUrl == "rtmp://127.0.0.1/live") "the portal tells the captures to push to their own origin")
    (check (map (b: b.url) portal.bbbServers == [ "https://lpc-2020-bbb-1.lpc.example.org/bigbluebutton/api" "https://lpc-2020-bbb-2.lpc.example.org/bigbluebutton/api" ]) "portal bbb servers")
    (check (portal.jitsi.domain == "lpc-2020-jitsi-1.lpc.example.org") "portal jitsi domain")
    (check (portal.jitsi.roomSizeUrl == "https://lpc-2020-jitsi-1.lpc.example.org/room-size") "portal reads room sizes from the Jitsi host")
    (check (map (b: b.statsUrl) portal.jitsi.bridges == [ "https://lpc-2020-jitsi-1.lpc.example.org/colibri/stats" "https://lpc-2020-jvb-1.lpc.example.org/colibri/stats" ]) "and every bridge's load")
    (check ((venue "lpc-2020-jitsi-1").jitsi.statsFrom == [ "198.51.100.2" "2001:db8:5::1" ] && (venue "lpc-2020-jvb-1").jvb.statsFrom == [ "198.51.100.2" "2001:db8:5::1" ]) "only the portal may read them")
    (check (!(portal ? eventFile)) "no eventFile unless given")
    (check (let c = chatWith { }; in c.enable && c.hostName == "chat.lpc.example.org" && c.serverAliases == [ "lpc-2020-chat-1.lpc.example.org" ]) "the chat host serves chat.<domain>, and its own name")
    (check ((chatWith { }).adminFrom == [ "198.51.100.2" "2001:db8:5::1" ]) "only the portal's addresses reach the admin API")
    (check (!(chatWith { }).federation.enable && !(chatWith { chat_federation = false; }).federation.enable) "no federation unless fleet.json (event.toml) asks")
    (check federated.federation.enable "federation as event.toml's [chat] says")
    (check (togetherVenue.chat.adminFrom == [ ] && togetherVenue.portal.chat == { }) "a portal beside the chat reaches it on loopback: no address let in")
    (check ((venue "lpc-2020-chat-1").domain == "lpc.example.org") "the chat's server name is the event's domain")
    (check (portal.oidc == { redirectUri = "https://chat.lpc.example.org/_synapse/client/oidc/callback"; }) "the portal's OIDC client calls back to the chat host")
    (check (portal.matrixHost == "chat.lpc.example.org") "the portal delegates the Matrix server name to the chat host")
    (check (portal.chat == { }) "the portal keeps the chat's rooms (portal.nix's defaults say where)")
    (check (!(noChatPortal ? oidc) && !(noChatPortal ? matrixHost) && !(noChatPortal ? chat)) "no chat host: no OIDC client, no delegation, no rooms")
    (check (!(builtins.tryEval (builtins.deepSeq twoChatsVenue.chat true)).success) "a second chat server is refused")
    (check (!((venue "lpc-2020-bbb-1") ? chat) && !((venue "lpc-2020-chat-1") ? portal)) "the chat role only on the chat host")
    (check ((builtins.tryEval (fleetLib.mkFleet { fleet = { servers = [ ]; }; })).success == false) "fleet without domain is refused")
  ];
in
builtins.deepSeq checks (builtins.attrNames hosts)
