# BigBlueButton 3.0 has no maintained NixOS packaging. This module runs the
# container images of the bigbluebutton/docker project (release v3.0.4) with
# virtualisation.oci-containers on podman: the same services, addresses and
# host networking as that project's docker-compose template, with NixOS'
# nginx terminating TLS (ACME) in front of the project's own nginx.
#
# Secrets: the agent's bbb-secret and turn-secret, plus internal passwords
# generated on the host, reach the containers through environment files that
# a root unit writes to /run at start: none of them enters the Nix store.
# That unit refuses to start while the agent's files are missing or empty
# (a server boots before `venue deploy` uploads them), and so do the
# containers, which require it; all of them are restarted when the files
# arrive (services.venue.secrets.consumers).
#
# Host users: the images run their processes as fixed ids that also own the
# data volumes on the host (bigbluebutton 998 in mod/base-java,
# bbb-export-annotations, recordings; redis 999 in the redis image). NixOS
# hands out dynamic system ids from 999 downwards, so an unrelated system
# user would own BBB's presentations; declaring users with those fixed ids
# takes them out of the allocation.
#
# Images are referenced by tag, not digest: no public source for their
# digests could be cited when this was written. Pin them through
# services.venue.bbb.images once digests are known.
#
# Read against:
# - bigbluebutton/docker v3.0.4 (f6e71fc9e32b): docker-compose.tmpl.yml
#   (addresses, host networking, nginx's extra_hosts, which always include
#   greenlight:10.7.7.21), mod/nginx/bigbluebutton (proxy_pass
#   http://greenlight:3000, baked into the image: nginx refuses to start
#   when that host does not resolve), mod/bbb-web/entrypoint.sh (renders
#   /etc/bigbluebutton/turn-stun-servers.xml.tmpl with dockerize at start,
#   chowns /var/bigbluebutton to uid 998), mod/bbb-web/turn-stun-servers.xml
#   (always `turn:<DOMAIN>:3478`, i.e. a TURN server on the BBB host),
#   mod/nginx/bigbluebutton (`root /www/`, `location = /default.pdf`), the
#   template's nginx volume `${DEFAULT_PRESENTATION}:/www/default.pdf` with
#   sample.env's DEFAULT_PRESENTATION=./mod/nginx/default.pdf (a file of the
#   repository, not of the image) and mod/bbb-web/bbb-web.properties
#   (defaultUploadedPresentation=${serverURL}/default.pdf), mod/periodic
#   (entrypoint.sh: every 30 minutes bbb-resync-freeswitch, `fs_cli -x
#   'fsctl sync_clock_when_idle'`, and removal of presentation directories
#   older than 5 days; scripts/fs_cli: ESL at 10.7.7.10 with FSESL_PASSWORD),
#   mod/base-java/Dockerfile and mod/bbb-export-annotations/Dockerfile
#   (`useradd -u 998 bigbluebutton`).
# - signalwire/freeswitch libs/esl/fs_cli.c (index copy 002e97848c4c): fs_cli
#   reads `$HOME/.fs_cli_conf`, `[default]` with `host`/`password`, so the
#   ESL password need not be on a command line.
# - nixpkgs nixos/modules/config/update-users-groups.pl @ 03fa53d23c31:
#   system uids and gids are allocated from 999 down to 400, skipping ids
#   declared in the configuration; users-groups.nix @ 005ab72f9cf5 asserts
#   declared ids are unique and allows a fixed uid < 1000 with isSystemUser.
# - nixpkgs nixos/modules/virtualisation/oci-containers.nix @ 035a24e7ed33
#   (newest stored): the podman unit `podman-<name>` gets
#   `RuntimeDirectory = <name>` and `--cidfile=/run/<name>/ctr-id`, so a
#   container named `nginx` shares /run/nginx with NixOS' nginx; image,
#   --network/--ip (extraOptions) and --env-file live in the unit's `script`.
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.bbb;
  turn = venue.turn;

  runDir = "/run/venue-bbb";
  net = "bbb-net";
  bridge = "bbb-br";
  gateway = "10.7.7.1";

  # Upstream's template always lists `turn:<DOMAIN>:3478` (a TURN server on
  # the BBB host itself, which venue does not run) and takes STUN from
  # STUN_SERVER. This one, mounted over the template, names the venue's
  # coturn instead; dockerize still fills in the secret at start, so only
  # the placeholder is in the store. No venue TURN host: no STUN/TURN at all.
  turnStunTemplate = pkgs.writeText "turn-stun-servers.xml.tmpl" (''
    <?xml version="1.0" encoding="UTF-8"?>
    <beans xmlns="http://www.springframework.org/schema/beans"
            xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
            xsi:schemaLocation="http://www.springframework.org/schema/beans
            http://www.springframework.org/schema/beans/spring-beans-2.5.xsd">
  '' + lib.optionalString (turn.host != null) ''
    <bean id="stun1" class="org.bigbluebutton.web.services.turn.StunServer">
      <constructor-arg index="0" value="stun:${turn.host}:${toString turn.port}"/>
    </bean>
    <bean id="turn0" class="org.bigbluebutton.web.services.turn.TurnServer">
      <constructor-arg index="0" value="{{ .Env.TURN_SECRET }}"/>
      <constructor-arg index="1" value="turn:${turn.host}:${toString turn.port}"/>
      <constructor-arg index="2" value="${toString turn.ttl}"/>
    </bean>
    <bean id="turn1" class="org.bigbluebutton.web.services.turn.TurnServer">
      <constructor-arg index="0" value="{{ .Env.TURN_SECRET }}"/>
      <constructor-arg index="1" value="turns:${turn.host}:${toString turn.tlsPort}?transport=tcp"/>
      <constructor-arg index="2" value="${toString turn.ttl}"/>
    </bean>
  '' + ''
      <bean id="stunTurnService" class="org.bigbluebutton.web.services.turn.StunTurnService">
        <property name="stunServers"><set>${lib.optionalString (turn.host != null) ''<ref bean="stun1"/>''}</set></property>
        <property name="turnServers"><set>${lib.optionalString (turn.host != null) ''<ref bean="turn0"/><ref bean="turn1"/>''}</set></property>
        <property name="remoteIceCandidates"><set></set></property>
      </bean>
    </beans>
  '');

  # Upstream mounts a small client settings file; it holds no secret.
  html5Settings = (pkgs.formats.yaml { }).generate "bbb-html5.yml" {
    public.app.appName = cfg.clientTitle;
  };

  # Sourced by the postgres image's entrypoint on first start.
  initdb = pkgs.writeText "venue-initdb.sh" ''
    for db in bbb_graphql hasura_app; do
      psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -c "CREATE DATABASE $db;"
    done
  '';

  vol = sub: target: "${cfg.stateDir}/${sub}:${target}";

  # The agent's files the environment files are made from.
  agentSecrets = [ cfg.secretFile ] ++ lib.optional (turn.host != null) turn.secretFile;

  # The ids the images run as and give the data volumes (see the header).
  imageIds = {
    bbb = 998;
    bbb-redis = 999;
  };

  # Upstream's mod/nginx/default.pdf at the tag the images come from: the
  # slide every meeting starts with.
  upstreamDefaultPdf = pkgs.fetchurl {
    url = "https://raw.githubusercontent.com/bigbluebutton/docker/f6e71fc9e32b0041796a7448f417c47cd9719085/mod/nginx/default.pdf";
    hash = "sha256-xTP4hmi6ebr8ZlpIWr+bY5LtT68xxlyJW10V07OaewY=";
  };

  # FreeSWITCH's event socket listens on its bridge address (vars.xml's
  # local_ip_v4); fs_cli reads the password from a file it is given as
  # $HOME/.fs_cli_conf, written with the shell's builtin printf, so the
  # password is in no process's arguments.
  resyncFreeswitch = ''
    umask 077
    home=$(mktemp -d)
    trap 'rm -rf "$home"' EXIT
    printf '[default]\nhost => 10.7.7.10\nport => 8021\npassword => %s\n' "$ESL_PASSWORD" > "$home/.fs_cli_conf"
    HOME=$home /opt/freeswitch/bin/fs_cli -x 'fsctl sync_clock_when_idle'
  '';

  # One container on the project's bridge network, at its fixed address.
  onNet = ip: {
    networks = [ net ];
    extraOptions = [ "--ip=10.7.7.${toString ip}" ];
  };
  hostNet = {
    extraOptions = [ "--network=host" ];
  };

  containers = {
    redis = onNet 5;

    postgres = lib.recursiveUpdate (onNet 22) {
      environment.POSTGRES_USER = "postgres";
      environmentFiles = [ "${runDir}/postgres.env" ];
      volumes = [
        (vol "postgres" "/var/lib/postgresql/data")
        "${initdb}:/docker-entrypoint-initdb.d/venue-initdb.sh:ro"
      ];
    };

    etherpad = onNet 4 // {
      dependsOn = [ "redis" ];
      environmentFiles = [ "${runDir}/etherpad.env" ];
    };

    bbb-pads = onNet 18 // {
      dependsOn = [ "redis" "etherpad" ];
      environmentFiles = [ "${runDir}/etherpad.env" ];
    };

    bbb-export-annotations = {
      dependsOn = [ "redis" "bbb-pads" ];
      networks = [ net ];
      extraOptions = [ "--ip=10.7.7.19" "--tmpfs=/tmp" ];
      volumes = [ (vol "bigbluebutton" "/var/bigbluebutton") ];
    };

    collabora = {
      networks = [ net ];
      extraOptions = [ "--ip=10.7.7.20" "--tmpfs=/tmp" ];
    };

    bbb-web = onNet 2 // {
      dependsOn = [ "redis" "etherpad" "bbb-pads" "collabora" ];
      environment = {
        DOMAIN = cfg.hostName;
        ENABLE_RECORDING = "false";
        ENABLE_HTTPS_PROXY = "false";
        IGNORE_TLS_CERT_ERRORS = "false";
        ENABLE_LEARNING_DASHBOARD = "true";
        WELCOME_MESSAGE = "";
        WELCOME_FOOTER = "";
      };
      environmentFiles = [ "${runDir}/shared.env" ];
      volumes = [
        (vol "bigbluebutton" "/var/bigbluebutton")
        (vol "freeswitch-meetings" "/var/freeswitch/meetings")
        "${turnStunTemplate}:/etc/bigbluebutton/turn-stun-servers.xml.tmpl:ro"
      ];
    };

    freeswitch = onNet 10 // {
      capabilities = lib.genAttrs [ "IPC_LOCK" "NET_ADMIN" "NET_RAW" "NET_BROADCAST" "SYS_NICE" "SYS_RESOURCE" ] (_: true);
      environment = {
        DOMAIN = cfg.hostName;
        EXTERNAL_IPv4 = cfg.externalIPv4;
        EXTERNAL_IPv6 = if cfg.externalIPv6 != null then cfg.externalIPv6 else "::1";
        SIP_IP_ALLOWLIST = "";
        SOUNDS_LANGUAGE = "en-us-callie";
      };
      environmentFiles = [ "${runDir}/esl.env" ];
      volumes = [ (vol "freeswitch-meetings" "/var/freeswitch/meetings") ];
    };

    # Not `nginx`: oci-containers would give it /run/nginx, NixOS' nginx's.
    bbb-nginx = {
      # Listens on the bridge gateway, which exists once a container joined.
      dependsOn = [ "bbb-web" ];
      extraOptions = hostNet.extraOptions ++ [ "--tmpfs=/tmp" ] ++ map (h: "--add-host=${h}") [
        "host.docker.internal:${gateway}"
        "bbb-web:10.7.7.2"
        "etherpad:10.7.7.4"
        "webrtc-sfu:${gateway}"
        # Upstream's site always proxies / to greenlight:3000 (no Greenlight
        # here: those requests fail, nginx itself starts).
        "greenlight:10.7.7.21"
        "bbb-graphql-server:10.7.7.31"
        "bbb-graphql-middleware:10.7.7.32"
      ];
      volumes = [
        (vol "bigbluebutton" "/var/bigbluebutton")
        # Not in the image: upstream mounts it from its repository.
        "${cfg.defaultPresentation}:/www/default.pdf:ro"
      ];
    };

    webrtc-sfu = {
      dependsOn = [ "redis" "freeswitch" ];
      environment.MS_WEBRTC_LISTEN_IPS = builtins.toJSON (
        lib.optional (cfg.externalIPv6 != null) { ip = "::"; announcedIp = cfg.externalIPv6; }
        ++ [{ ip = cfg.externalIPv4; announcedIp = cfg.externalIPv4; }]
      );
      environmentFiles = [ "${runDir}/esl.env" ];
      # mediasoup uses io_uring; upstream lifts seccomp and memlock for it.
      extraOptions = hostNet.extraOptions ++ [
        "--tmpfs=/var/log/bbb-webrtc-sfu"
        "--security-opt=seccomp=unconfined"
        "--ulimit=memlock=-1:-1"
      ];
      volumes = [ (vol "mediasoup" "/var/mediasoup") ];
    };

    fsesl-akka = onNet 14 // {
      dependsOn = [ "redis" "freeswitch" ];
      environmentFiles = [ "${runDir}/esl.env" ];
    };

    apps-akka = onNet 15 // {
      dependsOn = [ "redis" "postgres" ];
      environment.DOMAIN = cfg.hostName;
      environmentFiles = [ "${runDir}/shared.env" "${runDir}/postgres.env" ];
      volumes = [
        (vol "freeswitch-meetings" "/var/freeswitch/meetings")
        "${html5Settings}:/etc/bigbluebutton/bbb-html5.yml:ro"
      ];
    };

    bbb-graphql-server = onNet 31 // {
      dependsOn = [ "postgres" "bbb-web" "apps-akka" "bbb-graphql-actions" ];
      environment.POSTGRES_USER = "postgres";
      environmentFiles = [ "${runDir}/postgres.env" "${runDir}/hasura.env" ];
    };

    bbb-graphql-actions = onNet 30 // {
      dependsOn = [ "redis" "apps-akka" ];
    };

    bbb-graphql-middleware = {
      dependsOn = [ "bbb-graphql-server" "bbb-graphql-actions" "bbb-web" "redis" ];
      networks = [ net ];
      extraOptions = [ "--ip=10.7.7.32" "--add-host=nginx:${gateway}" ];
    };
  };

  # Tags from bigbluebutton/docker v3.0.4 (commit f6e71fc9e32b), its
  # docker-compose.tmpl.yml and repos/tags.
  defaultImages = {
    redis = "docker.io/library/redis:7.2-alpine";
    postgres = "docker.io/library/postgres:16-alpine";
    etherpad = "docker.io/alangecker/bbb-docker-etherpad:2.2.7-s8328b77-p88f3f6b";
    bbb-pads = "docker.io/alangecker/bbb-docker-pads:v1.5.3";
    bbb-export-annotations = "docker.io/alangecker/bbb-docker-bbb-export-annotations:v3.0.4";
    # Upstream says `latest`; pinned to a release tag seen pinned elsewhere
    # (owncloud/web's CI). Override with a digest once one can be cited.
    collabora = "docker.io/collabora/code:25.04.4.2.1";
    bbb-web = "docker.io/alangecker/bbb-docker-web:v3.0.4";
    freeswitch = "docker.io/alangecker/bbb-docker-freeswitch:v1.10.12-v3.0.4";
    bbb-nginx = "docker.io/alangecker/bbb-docker-nginx:v3.0.4-v5.3.1-1.25";
    webrtc-sfu = "docker.io/alangecker/bbb-docker-webrtc-sfu:v2.17.0-beta.6";
    fsesl-akka = "docker.io/alangecker/bbb-docker-fsesl-akka:v3.0.4";
    apps-akka = "docker.io/alangecker/bbb-docker-apps-akka:v3.0.4";
    bbb-graphql-server = "docker.io/alangecker/bbb-docker-graphql-server:v3.0.4";
    bbb-graphql-actions = "docker.io/alangecker/bbb-docker-graphql-actions:v3.0.4";
    bbb-graphql-middleware = "docker.io/alangecker/bbb-docker-graphql-middleware:v3.0.4";
  };

  unitDeps = [ "venue-bbb-secrets.service" "venue-bbb-network.service" ];
  podmanUnits = map (name: "podman-${name}.service") (lib.attrNames containers);
in
{
  imports = [ ./common.nix ./archive.nix ];

  options.services.venue.bbb = with lib.types; {
    enable = lib.mkEnableOption "a BigBlueButton 3.0 server (upstream container images)";

    hostName = lib.mkOption {
      type = str;
      example = "lpc-2020-bbb-1.lpc.example.org";
      description = "Public name of this BigBlueButton server.";
    };

    externalIPv4 = lib.mkOption {
      type = str;
      example = "203.0.113.7";
      description = "Public IPv4 address media is announced on.";
    };

    externalIPv6 = lib.mkOption {
      type = nullOr str;
      default = null;
      example = "2001:db8::1";
      description = "Public IPv6 address media is also announced on, if any.";
    };

    secretFile = lib.mkOption {
      type = str;
      default = "${venue.secretsDir}/bbb-secret";
      defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/bbb-secret"'';
      description = "File holding the API's shared secret.";
    };

    images = lib.mkOption {
      type = attrsOf str;
      default = { };
      example = { bbb-web = "docker.io/alangecker/bbb-docker-web@sha256:<digest>"; };
      description = ''
        Image references that replace the defaults (the tags of
        bigbluebutton/docker v3.0.4), per container; the other containers
        keep theirs. Use `name@sha256:<digest>` to pin one.
      '';
    };

    autoStart = lib.mkOption {
      type = bool;
      default = true;
      description = ''
        Start the containers at boot. The VM test turns this off: it has no
        registry to pull the images from.
      '';
    };

    stateDir = lib.mkOption {
      type = str;
      default = "/var/lib/venue-bbb";
      description = "Host directory for the containers' data volumes and internal passwords.";
    };

    defaultPresentation = lib.mkOption {
      type = path;
      default = upstreamDefaultPdf;
      defaultText = lib.literalMD "bigbluebutton/docker's `mod/nginx/default.pdf` (v3.0.4)";
      description = ''
        The PDF every meeting shows first (bbb-web asks for
        `https://<hostName>/default.pdf`), served by the project's nginx.
      '';
    };

    presentationRetentionDays = lib.mkOption {
      type = ints.positive;
      default = 5;
      description = ''
        Uploaded presentations older than this many days are removed (every
        30 minutes, as upstream's `periodic` container does).
      '';
    };

    clientTitle = lib.mkOption {
      type = str;
      default = "BigBlueButton";
      description = "Application name shown by the HTML5 client.";
    };

    apiPort = lib.mkOption {
      type = port;
      default = 48087;
      readOnly = true;
      description = "Port the project's nginx container listens on (fixed by the image).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = lib.all (n: defaultImages ? ${n}) (lib.attrNames cfg.images);
      message = "services.venue.bbb.images: unknown container(s) ${toString (lib.filter (n: !(defaultImages ? ${n})) (lib.attrNames cfg.images))}; known: ${toString (lib.attrNames defaultImages)}";
    }];

    users.users = lib.mapAttrs
      (name: id: {
        uid = id;
        group = name;
        isSystemUser = true;
        description = "uid ${toString id} of BigBlueButton's container images";
      })
      imageIds;
    users.groups = lib.mapAttrs (_: id: { gid = id; }) imageIds;

    virtualisation.oci-containers = {
      backend = "podman";
      containers = lib.mapAttrs
        (name: c: c // {
          image = (defaultImages // cfg.images).${name};
          inherit (cfg) autoStart;
        })
        containers;
    };

    systemd.services = {
      venue-bbb-network = {
        description = "Podman network of the BigBlueButton containers";
        path = [ config.virtualisation.podman.package ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        script = ''
          podman network exists ${net} || podman network create \
            --subnet 10.7.7.0/24 --gateway ${gateway} --interface-name ${bridge} ${net}
        '';
      };

      venue-bbb-secrets = {
        description = "Environment files with the BigBlueButton secrets";
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          UMask = "0077";
        };
        script = venue.secrets.requireFiles agentSecrets + ''
          # Data volumes. Not tmpfiles: it would reset the owners the images
          # give them (postgres, bbb-web's uid 998) on every switch. The BBB
          # data stays 0755: the nginx container's workers serve slides and
          # recordings from it as "other", as upstream's default umask allows.
          install -d -m 0755 ${cfg.stateDir}
          mkdir -p ${lib.concatMapStringsSep " " (d: "${cfg.stateDir}/${d}") [ "bigbluebutton" "freeswitch-meetings" "mediasoup" "postgres" ]}
          chmod 0755 ${cfg.stateDir}/bigbluebutton
          mkdir -p ${runDir} ${cfg.stateDir}/internal-secrets
          chmod 0700 ${cfg.stateDir}/internal-secrets
          internal() {
            f=${cfg.stateDir}/internal-secrets/$1
            [ -s "$f" ] || tr -dc A-Za-z0-9 </dev/urandom | head -c 40 > "$f"
            cat "$f"
          }
          # Each value in a variable first, then checked: an empty value
          # inside printf's arguments would not stop this script.
          shared=$(cat ${lib.escapeShellArg cfg.secretFile})
          turn=${if turn.host != null then ''$(cat ${lib.escapeShellArg turn.secretFile})'' else "''"}
          postgres=$(internal postgres)
          etherpad=$(internal etherpad)
          esl=$(internal esl)
          hasura=$(internal hasura)
          for v in shared ${lib.optionalString (turn.host != null) "turn "}postgres etherpad esl hasura; do
            if [ -z "''${!v}" ]; then
              echo "venue-bbb-secrets: the $v secret is empty: refusing to write the environment files" >&2
              exit 1
            fi
          done
          # TURN_SECRET: filled into our turn-stun-servers template by dockerize.
          printf 'SHARED_SECRET=%s\nTURN_SECRET=%s\n' "$shared" "$turn" > ${runDir}/shared.env
          printf 'POSTGRES_PASSWORD=%s\n' "$postgres" > ${runDir}/postgres.env
          printf 'ETHERPAD_API_KEY=%s\n' "$etherpad" > ${runDir}/etherpad.env
          printf 'ESL_PASSWORD=%s\nFSESL_PASSWORD=%s\n' "$esl" "$esl" > ${runDir}/esl.env
          printf 'HASURA_GRAPHQL_ADMIN_SECRET=%s\n' "$hasura" > ${runDir}/hasura.env
        '';
      };

      # What upstream's `periodic` container does every 30 minutes.
      venue-bbb-resync-freeswitch = {
        description = "Let FreeSWITCH resynchronise its clock when idle";
        path = [ config.virtualisation.podman.package ];
        serviceConfig.Type = "oneshot";
        script = ''
          if [ "$(podman container inspect -f '{{.State.Running}}' freeswitch 2>/dev/null)" != true ]; then
            echo "FreeSWITCH is not running: nothing to resynchronise"
            exit 0
          fi
          podman exec freeswitch sh -c ${lib.escapeShellArg resyncFreeswitch}
        '';
      };

      venue-bbb-clean-presentations = {
        description = "Remove BigBlueButton presentations older than ${toString cfg.presentationRetentionDays} days";
        serviceConfig = {
          Type = "oneshot";
          ProtectSystem = "strict";
          # "-": venue-bbb-secrets makes the directory at its first start.
          ReadWritePaths = [ "-${cfg.stateDir}/bigbluebutton" ];
          PrivateNetwork = true;
        };
        # bbb-web keeps each meeting's uploads in <meeting id>-<timestamp>/.
        script = ''
          [ -d ${cfg.stateDir}/bigbluebutton ] || exit 0
          find ${cfg.stateDir}/bigbluebutton -mindepth 1 -maxdepth 1 -type d -name '*-[0-9]*' \
            -mtime +${toString cfg.presentationRetentionDays} -print -exec rm -rf {} +
        '';
      };
    } // lib.mapAttrs'
      (name: _: lib.nameValuePair "podman-${name}" {
        requires = unitDeps;
        after = unitDeps;
      })
      containers;

    systemd.timers = lib.genAttrs [ "venue-bbb-resync-freeswitch" "venue-bbb-clean-presentations" ] (_: {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "5min";
        OnUnitActiveSec = "30min";
      };
    });

    # The environment files are made anew when the agent's secrets change;
    # restarting that unit restarts the running containers that require it.
    # Containers that do not start at boot are not started by new secrets.
    services.venue.secrets.consumers = lib.genAttrs
      ([ "venue-bbb-secrets.service" ] ++ lib.optionals cfg.autoStart podmanUnits)
      (_: agentSecrets);

    services.nginx.virtualHosts.${cfg.hostName} = venue.internal.vhostTls // {
      locations."/" = {
        proxyPass = "http://127.0.0.1:${toString cfg.apiPort}";
        proxyWebsockets = true;
        extraConfig = ''
          client_max_body_size 100m;
        '';
      };
    };

    networking.firewall = {
      allowedTCPPorts = [ 80 443 ];
      # WebRTC media (mediasoup, host network).
      allowedUDPPortRanges = [{ from = 16384; to = 32768; }];
      # Containers on the bridge reach host-network services (webrtc-sfu,
      # nginx) through the gateway address.
      trustedInterfaces = [ bridge ];
    };

    services.venue.healthz.checks.bbb = "http://127.0.0.1:${toString cfg.apiPort}/bigbluebutton/api";

    # What outlives the event (archive.nix): the published recordings, and
    # the raw ones whose processing had not finished when the event ended.
    services.venue.archive.items = {
      recordings-published.path = "${cfg.stateDir}/bigbluebutton/published";
      recordings-raw.path = "${cfg.stateDir}/bigbluebutton/recording/raw";
    };
  };
}
