# Toy NixOS-like systems that real Nix builds offline (no nixpkgs): each has
# bin/switch-to-configuration and bin/boot (what the test host's boot runs),
# which, once the host's secrets are in place, start the role's real
# services (services/default.nix: nginx with /healthz on port 80 and TLS on
# 443, coturn, prosody, venue-portal, fake-bbb) inside the host's
# namespaces; without them the services refuse to start. Same interface as the flake's systems: a function
# from fleet.json to one system per host.
#
#   broken:      host names whose system starts but never answers /healthz
#   payloadMiB, payloadPaths: a shared payload of about payloadMiB MiB in
#                payloadPaths store paths, for benchmarks: real libraries and
#                data files of this machine, which compress like a real closure
#
# What outlives the event (venue archive, venue down): every system declares
# it in etc/venue/archive.json, in the format of modules/archive.nix, read by
# the agent through the system profile. The bbb host holds sample recordings
# where BigBlueButton publishes them (below its state directory, here
# /var/lib/venue/bbb, the test host's own); the portal host runs the real
# `venue-portal` (the binary named by VENUE_TESTBED_PORTAL, stripped into the
# store) to create its database with three tickets, and holds four schedule
# picks; its archive is `venue-portal backup`; it then serves the portal
# behind nginx. Without VENUE_TESTBED_PORTAL the portal host holds nothing to
# archive and serves only /healthz. Likewise the bbb host runs fake-bbb (the
# BigBlueButton API) only with VENUE_TESTBED_BBB naming a built fake-bbb.
#
# A fleet with a chat host (chat-event.toml) runs Synapse there from the
# virtualenv of scripts/install-deps ($VENUE_SYNAPSE_VENV, default
# /opt/venue-synapse) on Debian's PostgreSQL, with the portal as its OpenID
# Connect provider (so only with VENUE_TESTBED_PORTAL); Synapse trusts the
# roots `venue check` trusts (VENUE_ACME_ROOT, VENUE_CHECK_ROOT: Pebble's).
# Its archive is Synapse's database (pg_dump) and every room's history
# (modules/chat-export-rooms.sh, found beside this folder in the repository
# or through VENUE_TESTBED_CHAT_EXPORT).
{ fleet, broken ? [ ], payloadMiB ? 0, payloadPaths ? 100, generation ? "1" }:
let
  mk = name: script: builtins.derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "set -e; export PATH=/bin:/usr/bin; ${script}" ];
  };

  # Shared by every host, as nixpkgs is: the part a re-deploy never resends.
  common = mk "toy-common" ''mkdir -p $out/www; echo "venue toy system" > $out/README'';

  # Path i takes every payloadPaths-th file, from the i-th on, up to its share.
  payload = builtins.genList
    (i: mk "toy-payload-${toString i}" ''
      mkdir -p $out; left=$(( ${toString payloadMiB} * 1048576 / ${toString payloadPaths} ))
      n=0
      find /usr/lib/x86_64-linux-gnu /usr/share -type f | sort | awk 'NR % ${toString payloadPaths} == ${toString i}' |
        while IFS= read -r f; do
          size=$(stat -c %s "$f")
          [ "$size" -le "$left" ] || continue
          n=$((n + 1)); cp "$f" "$out/$n"; left=$((left - size))
        done
    '')
    (if payloadMiB == 0 then 0 else payloadPaths);

  # Sample recordings: path below BigBlueButton's /var/bigbluebutton, size.
  # Contents are deterministic and incompressible: block i of a file is
  # sha256("<path>:<i>"), so a test knows every file's SHA-256 in advance.
  recordings = [
    { path = "published/presentation/6e35e3b2778883f5db637d7a5dba0a427f692e91-1764579600000/metadata.xml"; size = 1500; }
    { path = "published/presentation/6e35e3b2778883f5db637d7a5dba0a427f692e91-1764579600000/video/webcams.webm"; size = 393216; }
    { path = "published/presentation/6e35e3b2778883f5db637d7a5dba0a427f692e91-1764579600000/deskshare/deskshare.webm"; size = 262144; }
    { path = "published/presentation/a1f0c2d8e4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4-1764583200000/metadata.xml"; size = 1400; }
    { path = "published/presentation/a1f0c2d8e4b6a8c0e2f4a6b8c0d2e4f6a8b0c2d4-1764583200000/video/webcams.webm"; size = 327680; }
    { path = "recording/raw/c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2-1764586800000/events.xml"; size = 4000; }
    { path = "recording/raw/c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2-1764586800000/audio/audio.opus"; size = 196608; }
  ];
  sampleRecordings = mk "toy-recordings" ''
    mkdir -p $out
    python3 - $out '${builtins.toJSON recordings}' <<'EOP'
    import hashlib, json, os, sys
    out, files = sys.argv[1], json.loads(sys.argv[2])
    for f in files:
        p = os.path.join(out, f["path"])
        os.makedirs(os.path.dirname(p), exist_ok=True)
        blocks = (hashlib.sha256(f"{f['path']}:{i}".encode()).digest() for i in range(f["size"] // 32 + 1))
        with open(p, "wb") as o:
            o.write(b"".join(blocks)[: f["size"]])
    EOP
  '';

  bbbState = "/var/lib/venue/bbb/bigbluebutton";
  portalState = "/var/lib/venue/portal";

  # Without VENUE_TESTBED_PORTAL the portal host holds no database (and its
  # closure stays small, as the deploy tests and benchmark expect).
  portalBinary = builtins.getEnv "VENUE_TESTBED_PORTAL";
  withPortal = portalBinary != "";
  # The binary's hash makes a rebuilt binary a new store path.
  portalPackage = mk "toy-venue-portal-${builtins.substring 0 12 (builtins.hashFile "sha256" portalBinary)}"
    ''mkdir -p $out/bin; strip -o $out/bin/venue-portal ${portalBinary}'';

  # The chat: Synapse from the machine's virtualenv (as Debian's programs
  # come from /usr), only beside the real portal.
  hasChat = builtins.any (s: s.role == "chat" && !(s.static or false)) fleet.servers;
  withChat = hasChat && withPortal;
  envOr = name: default: let v = builtins.getEnv name; in if v == "" then default else v;
  synapseVenv = envOr "VENUE_SYNAPSE_VENV" "/opt/venue-synapse";
  rootFiles = builtins.filter (f: f != "") (map builtins.getEnv [ "VENUE_ACME_ROOT" "VENUE_CHECK_ROOT" ]);
  exportRooms =
    let
      given = builtins.getEnv "VENUE_TESTBED_CHAT_EXPORT";
      inRepo = ../../modules/chat-export-rooms.sh;
    in
    if given != "" then builtins.path { path = given; name = "chat-export-rooms.sh"; }
    else if builtins.pathExists inRepo then inRepo
    else throw "the chat host's archive runs modules/chat-export-rooms.sh: set VENUE_TESTBED_CHAT_EXPORT to it (this copy of hosts/testbed is outside the repository)";
  chat =
    if !withChat then null
    else if !builtins.pathExists "${synapseVenv}/bin/python" then
      throw "the chat host runs Synapse from ${synapseVenv}, which has no bin/python: run scripts/install-deps (or set VENUE_SYNAPSE_VENV)"
    else if rootFiles == [ ] then
      throw "the chat host's Synapse must trust the portal's certificate: set VENUE_ACME_ROOT or VENUE_CHECK_ROOT to the roots that sign it (the rehearsal's env file does)"
    else {
      venv = synapseVenv;
      roots = builtins.toFile "chat-roots.pem" (builtins.concatStringsSep "\n" (map builtins.readFile rootFiles));
      inherit exportRooms;
    };

  bbbBinary = builtins.getEnv "VENUE_TESTBED_BBB";
  bbbPackage = if bbbBinary == "" then null else
  mk "toy-fake-bbb-${builtins.substring 0 12 (builtins.hashFile "sha256" bbbBinary)}"
    ''mkdir -p $out/bin; strip -o $out/bin/fake-bbb ${bbbBinary}'';

  # The event the portal serves: event.toml, and the systems and installer
  # files it names (the event's parser checks that they exist). Nothing else
  # of this folder: the default state directory (.venue/, secrets included)
  # lives here too.
  eventDir = builtins.path {
    path = ./.;
    name = "venue-testbed-event";
    filter = path: _type: builtins.elem (baseNameOf path) [ "event.toml" "chat-event.toml" "systems.nix" "installer.nix" ];
  };

  seedTickets = builtins.toFile "tickets.csv" ''
    email,code,role,name
    ada@example.org,ada1-2345-6789,attendee,Ada Lovelace
    grace@example.org,grace-2345-6789,attendee,Grace Hopper
    noc@example.org,noc1-2345-6789,staff,Venue NOC
  '';

  # The chat's archive runs scripts of the host's services (their paths).
  archiveFor = services: {
    bbb = {
      recordings-published.path = "${bbbState}/published";
      recordings-raw.path = "${bbbState}/recording/raw";
    };
    portal = if !withPortal then { } else {
      "portal.sqlite" = {
        path = "${portalState}/archive.sqlite";
        dump = "${portalPackage}/bin/venue-portal backup ${portalState}/archive.sqlite --state ${portalState}";
      };
    };
    chat = if !withChat then { } else {
      "synapse.pgdump" = {
        path = "${chatState}/synapse.pgdump";
        dump = "sh ${services}/bin/chat-dump";
      };
      "rooms.json" = {
        path = "${chatState}/rooms.json";
        dump = "sh ${services}/bin/chat-export-rooms";
      };
    };
  };
  chatState = "/var/lib/venue/chat";

  # Run once, at the first activation: what the event leaves behind.
  dataFor = {
    bbb = ''
      if [ ! -d ${bbbState} ]; then
        mkdir -p ${bbbState}.new && cp -r ${sampleRecordings}/. ${bbbState}.new/ && chmod -R u+w ${bbbState}.new
        mv ${bbbState}.new ${bbbState}
      fi
    '';
    portal = if !withPortal then "" else ''
      if [ ! -f ${portalState}/portal.sqlite ]; then
        ${portalPackage}/bin/venue-portal tickets import ${seedTickets} --state ${portalState}
        python3 - ${portalState}/portal.sqlite <<'EOP'
      import sqlite3, sys
      db = sqlite3.connect(sys.argv[1])
      picks = [("ada@example.org", "talk-1"), ("ada@example.org", "talk-2"),
               ("grace@example.org", "talk-1"), ("noc@example.org", "talk-3")]
      db.executemany("INSERT INTO picks (ticket_id, guid) SELECT id, ? FROM tickets WHERE email = ?",
                     [(g, e) for e, g in picks])
      db.commit()
      EOP
      fi
    '';
  };

  # The first-activation script of a role (a file of its own: no quoting
  # through the switch script's here-document).
  dataScript = role: mk "toy-data-${role}" ''
    cat > $out <<'EOD'
    set -e
    ${dataFor.${role} or ""}
    EOD
  '';

  secretsFor = {
    bbb = [ "bbb-secret" "turn-secret" ];
    jitsi = [ "jwt-secret" "turn-secret" "jvb-muc-password" ];
    jvb = [ "jvb-muc-password" ];
    coturn = [ "turn-secret" ];
    portal = [ "bbb-secret" "jwt-secret" "turn-secret" "portal-session" "capture-secret" ]
      # The chat's OpenID Connect client and the bot's registration.
      ++ (if hasChat then [ "oidc-client-secret" "synapse-registration-secret" ] else [ ]);
    chat = [ "oidc-client-secret" "synapse-macaroon-secret" "synapse-form-secret" "synapse-registration-secret" ];
  };

  system = server:
    let
      healthy = !(builtins.elem server.name broken);
      services = import ./services {
        inherit mk fleet server;
        requiredSecrets = secretsFor.${server.role};
        # A broken host runs its services but never answers /healthz.
        healthz = {
          file = if healthy then "healthz" else "not-healthz";
          text = "${server.name} ${server.role} generation ${generation}";
        };
        portalPackage = if withPortal then portalPackage else null;
        inherit bbbPackage chat;
        # The chat rehearsal's event is the one whose fleet has a chat.
        eventFile = "${eventDir}/${if hasChat then "chat-event.toml" else "event.toml"}";
      };
    in
    mk "toy-system-${server.name}" ''
      mkdir -p $out/bin $out/www $out/etc/venue
      ln -s ${common} $out/common
      cat > $out/etc/venue/archive.json <<'EOJ'
      ${builtins.toJSON { items = (archiveFor services).${server.role} or { }; }}
      EOJ
      echo "${builtins.concatStringsSep " " payload}" > $out/payload
      ln -s ${services} $out/services
      cp -r ${services}/www/. $out/www/
      ${if server.role == "portal" && withPortal then ''
        # The module's admin wrapper (modules/portal.nix), which `venue check`
        # runs for its probe ticket: the portal's command on its state.
        mkdir -p $out/sw/bin
        printf '#!/bin/sh\nexec %s "$@" --state %s\n' ${portalPackage}/bin/venue-portal ${portalState} > $out/sw/bin/venue-portal-ctl
        chmod +x $out/sw/bin/venue-portal-ctl
      '' else ""}
      cat > $out/bin/switch-to-configuration <<EOS
      #!/bin/sh
      # Like NixOS's: make this system the running one. A service that
      # refuses to start (no secrets) fails the switch.
      set -e
      [ "\$1" = switch ] || { echo "usage: switch-to-configuration switch" >&2; exit 1; }
      sh ${dataScript server.role}
      sh ${services}/bin/start
      echo "switched to $out"
      EOS
      # What the boot does with this system (the test host's boot runs it):
      # start its services with the secrets on the disk, or refuse without;
      # nothing when a deploy's switch started them first (bin/start boot).
      cat > $out/bin/boot <<EOS
      #!/bin/sh
      set -e
      sh ${dataScript server.role}
      exec sh ${services}/bin/start boot
      EOS
      chmod +x $out/bin/switch-to-configuration $out/bin/boot
    '';

  # What a venue image carries (`venue image build`): an installed system
  # of no role and no host, the same for every event; `venue up` from the
  # image then deploys each host's own system over it. Not a host: host
  # names are <event>-<role>-<n>.
  base = mk "toy-system-base" ''
    mkdir -p $out/bin $out/etc/venue
    ln -s ${common} $out/common
    echo '{"items": {}}' > $out/etc/venue/archive.json
    printf '#!/bin/sh\necho "the base system has nothing to start"\n' > $out/bin/switch-to-configuration
    chmod +x $out/bin/switch-to-configuration
  '';
in
builtins.listToAttrs
  (map (s: { name = s.name; value = system s; })
    (builtins.filter (s: !(s.static or false)) fleet.servers))
  // { inherit base; }
