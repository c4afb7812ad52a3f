# BigBlueButton 3.0 has no maintained NixOS packaging. This module runs the
# container images of the bigbluebutton/docker project (release v3.0.4) with
# virtualisation.oci-containers on podman: the same services, addresses and
# host networking as that project's docker-compose template, with NixOS'
# nginx terminating TLS (ACME) in front of the project's own nginx.
#
# Secrets: the agent's bbb-secret and turn-secret, plus internal passwords
# generated on the host, reach the containers through environment files that
# a root unit writes to /run at start: none of them enters the Nix store.
#
# Images are referenced by tag, not digest: no public source for their
# digests could be cited when this was written. Pin them through
# services.venue.bbb.images once digests are known.
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.bbb;
  turn = venue.turn;

  runDir = "/run/venue-bbb";
  net = "bbb-net";
  bridge = "bbb-br";
  gateway = "10.7.7.1";

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
      } // lib.optionalAttrs (turn.host != null) {
        STUN_SERVER = "stun:${turn.host}:${toString turn.port}";
        # The venue's coturn, over TLS: the clients that need TURN at all
        # are the ones behind firewalls that block UDP.
        TURN_EXT_SERVER = "turns:${turn.host}:${toString turn.tlsPort}?transport=tcp";
      };
      environmentFiles = [ "${runDir}/shared.env" ];
      volumes = [
        (vol "bigbluebutton" "/var/bigbluebutton")
        (vol "freeswitch-meetings" "/var/freeswitch/meetings")
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

    nginx = {
      # Listens on the bridge gateway, which exists once a container joined.
      dependsOn = [ "bbb-web" ];
      extraOptions = hostNet.extraOptions ++ [ "--tmpfs=/tmp" ] ++ map (h: "--add-host=${h}") [
        "host.docker.internal:${gateway}"
        "bbb-web:10.7.7.2"
        "etherpad:10.7.7.4"
        "webrtc-sfu:${gateway}"
        "bbb-graphql-server:10.7.7.31"
        "bbb-graphql-middleware:10.7.7.32"
      ];
      volumes = [ (vol "bigbluebutton" "/var/bigbluebutton") ];
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
    collabora = "docker.io/collabora/code:latest";
    bbb-web = "docker.io/alangecker/bbb-docker-web:v3.0.4";
    freeswitch = "docker.io/alangecker/bbb-docker-freeswitch:v1.10.12-v3.0.4";
    nginx = "docker.io/alangecker/bbb-docker-nginx:v3.0.4-v5.3.1-1.25";
    webrtc-sfu = "docker.io/alangecker/bbb-docker-webrtc-sfu:v2.17.0-beta.6";
    fsesl-akka = "docker.io/alangecker/bbb-docker-fsesl-akka:v3.0.4";
    apps-akka = "docker.io/alangecker/bbb-docker-apps-akka:v3.0.4";
    bbb-graphql-server = "docker.io/alangecker/bbb-docker-graphql-server:v3.0.4";
    bbb-graphql-actions = "docker.io/alangecker/bbb-docker-graphql-actions:v3.0.4";
    bbb-graphql-middleware = "docker.io/alangecker/bbb-docker-graphql-middleware:v3.0.4";
  };

  unitDeps = [ "venue-bbb-secrets.service" "venue-bbb-network.service" ];
in
{
  imports = [ ./common.nix ];

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
      default = defaultImages;
      defaultText = lib.literalMD "the tags of bigbluebutton/docker v3.0.4";
      description = ''
        Image reference per container. Override an entry with
        `name@sha256:<digest>` to pin it.
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
    virtualisation.oci-containers = {
      backend = "podman";
      containers = lib.mapAttrs
        (name: c: c // {
          image = cfg.images.${name};
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
        script = ''
          mkdir -p ${runDir} ${cfg.stateDir}/internal-secrets
          internal() {
            f=${cfg.stateDir}/internal-secrets/$1
            [ -s "$f" ] || tr -dc A-Za-z0-9 </dev/urandom | head -c 40 > "$f"
            cat "$f"
          }
          shared=$(cat ${lib.escapeShellArg cfg.secretFile})
          turn=${if turn.host != null then ''$(cat ${lib.escapeShellArg turn.secretFile})'' else "''"}
          printf 'SHARED_SECRET=%s\nTURN_SECRET=%s\nTURN_EXT_SECRET=%s\n' "$shared" "$turn" "$turn" > ${runDir}/shared.env
          printf 'POSTGRES_PASSWORD=%s\n' "$(internal postgres)" > ${runDir}/postgres.env
          printf 'ETHERPAD_API_KEY=%s\n' "$(internal etherpad)" > ${runDir}/etherpad.env
          esl=$(internal esl)
          printf 'ESL_PASSWORD=%s\nFSESL_PASSWORD=%s\n' "$esl" "$esl" > ${runDir}/esl.env
          printf 'HASURA_GRAPHQL_ADMIN_SECRET=%s\n' "$(internal hasura)" > ${runDir}/hasura.env
        '';
      };
    } // lib.mapAttrs'
      (name: _: lib.nameValuePair "podman-${name}" {
        requires = unitDeps;
        after = unitDeps;
      })
      containers;

    systemd.tmpfiles.rules = map (d: "d ${cfg.stateDir}/${d} 0750 root root - -") [
      "bigbluebutton"
      "freeswitch-meetings"
      "mediasoup"
      "postgres"
    ];

    services.nginx.virtualHosts.${cfg.hostName} = {
      enableACME = true;
      forceSSL = true;
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
  };
}
