# The attendee portal: `venue-portal serve` as a hardened systemd service
# (dynamic user, its SQLite file in a StateDirectory) behind nginx with ACME.
# Its configuration file names the BBB servers, the Jitsi domain and the
# TURN server, and only the paths of secrets: systemd copies the root-only
# secret files into the service's credentials directory at start.
# Without them it does not start: systemd refuses a missing credential file,
# and a root check before the start refuses an empty one, naming it; the
# portal is restarted when the agent uploads them
# (services.venue.secrets.consumers, common.nix).
#
# Read against nixpkgs (newest stored copy):
# - nixos/modules/services/web-servers/nginx/vhost-options.nix @ 9c5718477:
#   serverAliases, forceSSL/enableACME, sslCertificate(Key) (`types.path`,
#   a string path is used in place: the agent's certificate never enters
#   the store).
#
# With `oidc` the portal is the OpenID Connect provider of the event's
# homeserver (docs/portal.md, `[oidc]`); with `matrixHost` its nginx
# delegates the event's Matrix server name to the chat host
# (`/.well-known/matrix/{server,client}`, as Synapse's and the Matrix
# specification's server and client discovery read them); with `chat` it
# keeps the homeserver's rooms in step with the event (`[chat]`: its bot
# uses Synapse's admin API, on loopback when Synapse runs on this host, else
# through the chat host's nginx, which lets only the portal's addresses in;
# chat.nix `adminFrom`).
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.portal;
  toml = pkgs.formats.toml { };

  unit = "venue-portal";
  credDir = "/run/credentials/${unit}.service";

  # Credential names must be unique; one per distinct secret file.
  bbbSecretFiles = lib.unique (map (s: s.secretFile) cfg.bbbServers);
  bbbCredName = file: "bbb-secret-${toString (lib.lists.findFirstIndex (f: f == file) 0 bbbSecretFiles)}";

  portalConfig = {
    session_secret_file = "${credDir}/portal-session";
    public_url = cfg.publicUrl;
    poll_interval_seconds = cfg.pollIntervalSeconds;
    bbb = map
      (s: {
        inherit (s) name url checksum;
        secret_file = "${credDir}/${bbbCredName s.secretFile}";
      })
      cfg.bbbServers;
  } // lib.optionalAttrs (cfg.jitsi.domain != null) {
    jitsi = {
      inherit (cfg.jitsi) domain;
      app_id = cfg.jitsi.appId;
      secret_file = "${credDir}/jwt-secret";
      bridge = map (b: { inherit (b) name; stats_url = b.statsUrl; }) cfg.jitsi.bridges;
    } // lib.optionalAttrs (cfg.jitsi.roomSizeUrl != null) {
      room_size_url = cfg.jitsi.roomSizeUrl;
    };
  } // lib.optionalAttrs (cfg.poolFile != null) {
    pool_file = cfg.poolFile;
    # The agent names its root-only files; the service reads its credentials.
    pool_secret_files."${venue.secretsDir}/bbb-secret" = "${credDir}/pool-bbb-secret";
    pool_api_secret_file = "${credDir}/pool-api-secret";
  } // lib.optionalAttrs (cfg.streamUrls != [ ]) {
    stream.urls = cfg.streamUrls;
  } // lib.optionalAttrs (cfg.captureRtmpUrl != null) {
    capture = {
      secret_file = "${credDir}/capture-secret";
      rtmp_url = cfg.captureRtmpUrl;
    };
  } // lib.optionalAttrs (cfg.oidc != null) {
    oidc = {
      inherit (cfg.oidc) issuer;
      client_id = cfg.oidc.clientId;
      client_secret_file = "${credDir}/oidc-client-secret";
      redirect_uri = cfg.oidc.redirectUri;
      token_ttl_seconds = cfg.oidc.tokenTtlSeconds;
    };
  } // lib.optionalAttrs (cfg.chat != null) {
    chat = {
      homeserver_url = cfg.chat.homeserverUrl;
      server_name = cfg.chat.serverName;
      registration_shared_secret_file = "${credDir}/synapse-registration-secret";
      element_url = cfg.chat.elementUrl;
      auth_provider = cfg.chat.authProvider;
    } // lib.optionalAttrs (cfg.chat.syncIntervalSeconds != null) {
      sync_interval_seconds = cfg.chat.syncIntervalSeconds;
    };
  } // lib.optionalAttrs (venue.turn.host != null) {
    turn = {
      uris = [
        "turn:${venue.turn.host}:${toString venue.turn.port}?transport=udp"
        "turns:${venue.turn.host}:${toString venue.turn.tlsPort}?transport=tcp"
      ];
      secret_file = "${credDir}/turn-secret";
      ttl_seconds = venue.turn.ttl;
    };
  };

  configFile = toml.generate "venue-portal.toml" portalConfig;

  # Credential name → the agent's file.
  secretFiles =
    [{ name = "portal-session"; file = cfg.sessionSecretFile; }]
    ++ map (f: { name = bbbCredName f; file = f; }) bbbSecretFiles
    ++ lib.optional (cfg.jitsi.domain != null) { name = "jwt-secret"; file = cfg.jitsi.secretFile; }
    ++ lib.optional (venue.turn.host != null) { name = "turn-secret"; file = venue.turn.secretFile; }
    ++ lib.optional (cfg.captureRtmpUrl != null) { name = "capture-secret"; file = "${venue.secretsDir}/capture-secret"; }
    ++ lib.optional (cfg.oidc != null) { name = "oidc-client-secret"; file = cfg.oidc.clientSecretFile; }
    ++ lib.optional (cfg.chat != null) { name = "synapse-registration-secret"; file = cfg.chat.registrationSecretFile; }
    ++ lib.optionals (cfg.poolFile != null) [
      { name = "pool-bbb-secret"; file = "${venue.secretsDir}/bbb-secret"; }
      { name = "pool-api-secret"; file = "${venue.secretsDir}/capture-secret"; }
    ];
  credentials = map (c: "${c.name}:${c.file}") secretFiles;

  # The homeserver as chat.nix declares it (on this host or another, with
  # the same defaults); the module may be absent where the portal is used
  # alone.
  chatHere = venue.chat.enable or false;
  chatHostName = venue.chat.hostName or "chat.${venue.domain}";

  # Matrix server discovery for the event's server name (the domain): JSON
  # answered by nginx, readable by Element on another origin.
  wellKnown = body: {
    return = "200 '${builtins.toJSON body}'";
    extraConfig = ''
      default_type application/json;
      add_header Access-Control-Allow-Origin * always;
    '';
  };

  # Admin commands must run as the service's dynamic user, or the SQLite
  # file they touch would end up owned by root.
  portalCtl = pkgs.writeShellScriptBin "venue-portal-ctl" ''
    exec ${config.systemd.package}/bin/systemd-run --quiet --wait --pipe --collect \
      -p DynamicUser=yes -p User=${unit} -p StateDirectory=${unit} \
      -- ${lib.getExe' cfg.package "venue-portal"} "$@" --state /var/lib/${unit}
  '';
in
{
  imports = [ ./common.nix ./archive.nix ];

  options.services.venue.portal = with lib.types; {
    enable = lib.mkEnableOption "the venue's attendee portal";

    package = lib.mkOption {
      type = package;
      description = "The venue-portal package (this flake's `packages.<system>.venue-portal`).";
    };

    hostName = lib.mkOption {
      type = str;
      example = "lpc-2020-portal-1.lpc.example.org";
      description = "Public name of the portal.";
    };

    eventFile = lib.mkOption {
      type = path;
      example = lib.literalExpression ''"''${./hosts/lpc-2020}/event.toml"'';
      description = ''
        The event description (event.toml); it holds no secret. The schedule
        file it names is read from the same directory, so pass the folder
        (as in the example) rather than the file alone.
      '';
    };

    serverAliases = lib.mkOption {
      type = listOf str;
      default = [ ];
      example = [ "lpc-2020-portal-1.lpc.example.org" ];
      description = "Other names the portal answers to (the host's own name, when the portal lives at the event's domain).";
    };

    publicUrl = lib.mkOption {
      type = str;
      default = "https://${cfg.hostName}";
      defaultText = lib.literalExpression ''"https://''${config.services.venue.portal.hostName}"'';
      description = "The portal's public URL: BBB's logout URL points back here; https makes cookies Secure.";
    };

    listen = lib.mkOption {
      type = str;
      default = "127.0.0.1:8087";
      description = "Local address the portal listens on; nginx proxies to it.";
    };

    streamUrls = lib.mkOption {
      type = listOf str;
      default = [ ];
      example = [ "https://lpc-2020-edge-1.lpc.example.org/hls" ];
      description = ''
        HLS base URLs of the venue's stream edges (or its origin): a streamed
        room's Watch page plays `<url>/<room slug>.m3u8`, each ticket always
        from the same one.
      '';
    };

    captureRtmpUrl = lib.mkOption {
      type = nullOr str;
      default = null;
      example = "rtmp://127.0.0.1/live";
      description = ''
        Where the stage captures push (as the capture host sees it): with it,
        the portal serves the capture API (`/capture/api/…`, authenticated with
        the event's `capture-secret`) that tells the capture hosts which
        streamed rooms should be live, and a room is pushed to
        `<url>/<room slug>`.
      '';
    };

    poolFile = lib.mkOption {
      type = nullOr str;
      default = null;
      example = "/var/lib/venue/pool.json";
      description = ''
        The BigBlueButton pool file that `venue autopilot` writes (JSON, mode
        0644, renamed into place): servers beyond {option}`bbbServers` join,
        drain and leave without a restart. Its entries' secret file must be
        the event's `bbb-secret`, which the service gets as a credential.
        With it, `GET /pool/api/servers` answers the agent (Bearer: the
        event's `capture-secret`).
      '';
    };

    oidc = lib.mkOption {
      default = null;
      description = ''
        The OpenID Connect provider for the event's homeserver (`[oidc]`):
        ticket holders log in to the chat with their ticket. Null: the
        provider's endpoints answer 404.
      '';
      type = nullOr (submodule {
        options = {
          issuer = lib.mkOption {
            type = str;
            default = cfg.publicUrl;
            defaultText = lib.literalExpression "config.services.venue.portal.publicUrl";
            description = "The issuer ID tokens name: `scheme://host[:port]`, no path.";
          };
          clientId = lib.mkOption {
            type = str;
            default = "synapse";
            description = "The one registered client (the homeserver).";
          };
          clientSecretFile = lib.mkOption {
            type = str;
            default = "${venue.secretsDir}/oidc-client-secret";
            defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/oidc-client-secret"'';
            description = "The client secret shared with the homeserver (at least 16 characters).";
          };
          redirectUri = lib.mkOption {
            type = str;
            example = "https://chat.lpc.example.org/_synapse/client/oidc/callback";
            description = "The homeserver's callback, compared byte for byte.";
          };
          tokenTtlSeconds = lib.mkOption {
            type = ints.between 30 86400;
            default = 300;
            description = "Lifetime of ID tokens and access tokens.";
          };
        };
      });
    };

    chat = lib.mkOption {
      default = null;
      description = ''
        The event's Matrix homeserver, which the portal keeps in step with
        the event (`[chat]`: rooms, invitations, topics, revoked tickets) as
        its own bot, an admin registered with Synapse's shared secret.
        Needs {option}`oidc` (users are found by their OpenID Connect
        subject). Null: no chat features.
      '';
      type = nullOr (submodule {
        options = {
          homeserverUrl = lib.mkOption {
            type = str;
            default = if chatHere then "http://127.0.0.1:${toString venue.chat.port}" else "https://${chatHostName}";
            defaultText = lib.literalMD "Synapse on loopback when the chat runs on this host, else `https://<chat hostName>`";
            description = "The client and admin API as the portal reaches them.";
          };
          serverName = lib.mkOption {
            type = str;
            default = venue.chat.serverName or venue.domain;
            defaultText = lib.literalExpression "config.services.venue.chat.serverName";
            description = "Synapse's server_name: user IDs and aliases end in it.";
          };
          elementUrl = lib.mkOption {
            type = str;
            default = "https://${chatHostName}";
            defaultText = lib.literalExpression ''"https://''${config.services.venue.chat.hostName}"'';
            description = "Element, where the portal's Chat buttons open rooms.";
          };
          authProvider = lib.mkOption {
            type = str;
            # Synapse prefixes every idp_id but the legacy "oidc" (config/oidc.py).
            default = let id = venue.chat.oidc.idpId or "venue"; in if id == "oidc" then id else "oidc-${id}";
            defaultText = lib.literalExpression ''"oidc-''${config.services.venue.chat.oidc.idpId}"'';
            description = "The IdP ID under which Synapse records the portal's subjects: `oidc-` and its provider's idp_id.";
          };
          registrationSecretFile = lib.mkOption {
            type = str;
            default = "${venue.secretsDir}/synapse-registration-secret";
            defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/synapse-registration-secret"'';
            description = "Synapse's registration shared secret (the agent's file; the service gets it as a credential).";
          };
          syncIntervalSeconds = lib.mkOption {
            type = nullOr (numbers.between 0.2 3600);
            default = null;
            description = "Seconds between two passes of the room sync; null: the portal's default (30).";
          };
        };
      });
    };

    matrixHost = lib.mkOption {
      type = nullOr str;
      default = null;
      example = "chat.lpc.example.org";
      description = ''
        The homeserver the event's Matrix server name (the portal's name) is
        delegated to: nginx answers `/.well-known/matrix/server` with
        `<matrixHost>:443` and `/.well-known/matrix/client` with
        `https://<matrixHost>`.
      '';
    };

    pollIntervalSeconds = lib.mkOption {
      type = ints.positive;
      default = 10;
      description = "How often the portal polls each BigBlueButton server for its load.";
    };

    sessionSecretFile = lib.mkOption {
      type = str;
      default = "${venue.secretsDir}/portal-session";
      defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/portal-session"'';
      description = "File holding the key that signs the portal's cookies.";
    };

    bbbServers = lib.mkOption {
      default = [ ];
      description = "BigBlueButton servers the portal places rooms on.";
      type = listOf (submodule {
        options = {
          name = lib.mkOption {
            type = str;
            example = "lpc-2020-bbb-1";
            description = "Server name (the fleet's host name).";
          };
          url = lib.mkOption {
            type = str;
            example = "https://lpc-2020-bbb-1.lpc.example.org/bigbluebutton/api";
            description = "API endpoint.";
          };
          secretFile = lib.mkOption {
            type = str;
            default = "${venue.secretsDir}/bbb-secret";
            defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/bbb-secret"'';
            description = "File holding the server's shared secret.";
          };
          checksum = lib.mkOption {
            type = enum [ "sha1" "sha256" ];
            default = "sha256";
            description = "Checksum algorithm of the API calls.";
          };
        };
      });
    };

    jitsi = {
      domain = lib.mkOption {
        type = nullOr str;
        default = null;
        example = "lpc-2020-jitsi-1.lpc.example.org";
        description = "The Jitsi Meet host; null when the event has no Jitsi rooms.";
      };

      appId = lib.mkOption {
        type = str;
        default = "venue";
        description = "Issuer (`iss`) of the tokens; prosody's app_id.";
      };

      roomSizeUrl = lib.mkOption {
        type = nullOr str;
        default = null;
        example = "https://lpc-2020-jitsi-1.lpc.example.org/room-size";
        description = "prosody's mod_muc_size endpoint on the Jitsi host: people per room for /status and the room list.";
      };

      bridges = lib.mkOption {
        default = [ ];
        description = "Videobridges whose load /status shows.";
        type = listOf (submodule {
          options = {
            name = lib.mkOption {
              type = str;
              example = "lpc-2020-jvb-1";
              description = "The bridge's name (the fleet's host name).";
            };
            statsUrl = lib.mkOption {
              type = str;
              example = "https://lpc-2020-jvb-1.lpc.example.org/colibri/stats";
              description = "The bridge's `/colibri/stats`.";
            };
          };
        });
      };

      secretFile = lib.mkOption {
        type = str;
        default = "${venue.secretsDir}/jwt-secret";
        defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/jwt-secret"'';
        description = "File holding the HS256 secret shared with prosody.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = cfg.chat == null || cfg.oidc != null;
      message = "services.venue.portal.chat needs services.venue.portal.oidc: the portal finds the homeserver's users by their OpenID Connect subject";
    }];

    # Wire in the roles that run on this very host.
    services.venue.portal = {
      jitsi = lib.mkIf (venue.jitsi.enable or false) {
        domain = lib.mkDefault venue.jitsi.hostName;
        appId = lib.mkDefault venue.jitsi.jwt.appId;
        secretFile = lib.mkDefault venue.jitsi.jwt.secretFile;
        roomSizeUrl = lib.mkDefault "https://${venue.jitsi.hostName}/room-size";
        bridges = [{ name = config.networking.hostName; statsUrl = "https://${venue.jitsi.hostName}/colibri/stats"; }];
      };
      oidc = lib.mkIf (venue.chat.enable or false) {
        clientId = lib.mkDefault venue.chat.oidc.clientId;
        clientSecretFile = lib.mkDefault venue.chat.oidc.clientSecretFile;
        redirectUri = lib.mkDefault "https://${venue.chat.hostName}/_synapse/client/oidc/callback";
      };
      matrixHost = lib.mkIf (venue.chat.enable or false) (lib.mkDefault venue.chat.hostName);
      chat = lib.mkIf chatHere (lib.mkDefault { });
      bbbServers = lib.mkIf (venue.bbb.enable or false) [{
        name = config.networking.hostName;
        url = "https://${venue.bbb.hostName}/bigbluebutton/api";
        secretFile = venue.bbb.secretFile;
      }];
    };

    systemd.services.${unit} = {
      description = "venue attendee portal";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ configFile cfg.eventFile ];
      # Hardened as a network server that writes only its state directory (sandbox.nix).
      serviceConfig = (import ./sandbox.nix).networkService // {
        ExecStart = lib.escapeShellArgs [
          (lib.getExe' cfg.package "venue-portal")
          "serve"
          "--event"
          "${cfg.eventFile}"
          "--listen"
          cfg.listen
          "--state"
          "/var/lib/${unit}"
          "--config"
          "${configFile}"
        ];
        LoadCredential = credentials;
        ExecStartPre = [ (venue.secrets.requireFilesCommand unit (map (c: c.file) secretFiles)) ];
        DynamicUser = true;
        User = unit;
        StateDirectory = unit;
        StateDirectoryMode = "0700";
        Restart = "on-failure";
        SystemCallFilter = [ "@system-service" "~@privileged @resources" ];
      };
    };

    services.venue.secrets.consumers."${unit}.service" = map (c: c.file) secretFiles;

    environment.systemPackages = [ portalCtl ];

    services.nginx.virtualHosts.${cfg.hostName} = venue.internal.vhostTls // {
      inherit (cfg) serverAliases;
      locations = {
        "/".proxyPass = "http://${cfg.listen}";
      } // lib.optionalAttrs (cfg.matrixHost != null) {
        "= /.well-known/matrix/server" = wellKnown { "m.server" = "${cfg.matrixHost}:443"; };
        "= /.well-known/matrix/client" = wellKnown { "m.homeserver".base_url = "https://${cfg.matrixHost}"; };
      };
    };

    networking.firewall.allowedTCPPorts = [ 80 443 ];

    services.venue.healthz.checks.portal = "http://${cfg.listen}/healthz";

    # What outlives the event (archive.nix): the database, copied by SQLite's
    # online backup while the portal serves, as the service's own user.
    services.venue.archive.items."portal.sqlite" = {
      path = "/var/lib/${unit}/archive.sqlite";
      dump = "${portalCtl}/bin/venue-portal-ctl backup /var/lib/${unit}/archive.sqlite";
    };
  };
}
