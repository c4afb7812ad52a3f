# The main Jitsi Meet host: web app, prosody, jicofo and a videobridge, on
# top of nixpkgs' services.jitsi-meet. Adds what an event needs: rooms only
# for holders of a token the portal signed, TURN credentials from the
# venue's coturn, colibri websockets through nginx, and a bridge MUC that
# extra videobridge hosts (jvb.nix) can join.
#
# Read against nixpkgs (nixos-26.05 line, the newest copies stored):
# - nixos/modules/services/web-apps/jitsi-meet.nix (the secureDomain /
#   jitsi-excalidraw revision, meta.teams): always declares the prosody
#   VirtualHost "guest.<host>" with `authentication = "anonymous"`; jicofo
#   authentication is on only with secureDomain; the conference MUC is a
#   `services.prosody.muc` list entry; prosody.package is a mkDefault
#   override (cjson); enableACME/forceSSL on the vhost are mkDefault.
# - nixos/modules/services/networking/prosody.nix @ daaf9122b9fa: renders
#   each MUC as `Component "<domain>" "muc"` + `modules_enabled = {...}` and
#   the VirtualHosts after all MUCs, in attribute order; `enabled` renders as
#   `enabled = <bool>;` in the host block.
# - pkgs/by-name/pr/prosody/package.nix @ b1325fd54d3a: prosody 13.0.3,
#   whose config parser (core/configmanager.lua, since 13.0.0) supports
#   `option:append { ... }` on an option already set for that host.
# - nixos/modules/services/networking/jitsi-videobridge.nix (newest stored,
#   `apis.rest.enabled = cfg.colibriRestApi`): /colibri/stats on the
#   bridge's private HTTP server, which stays on loopback; nginx passes it on
#   to the portal's addresses only, as it does prosody's /room-size
#   (mod_muc_size from jitsi-meet-prosody, on the main virtual host).
#   (Read in the newest stored copy, search index file 559257253; the one
#   at 1597341de966 still has the old `apis` list.)
# - jitsi-meet-prosody's token/util.lib.lua: verify_room lets a session
#   without a token (an anonymous one) through, "jicofo is verifying
#   creation domain", which it does not without authentication. Hence no
#   anonymous host at all here.
#
# jitsi-meet carries libolm's knownVulnerabilities (end-to-end encryption
# code the venue does not rely on). The module cannot permit it through
# nixpkgs.config (that breaks every configuration that passes its own
# `nixpkgs.pkgs`): whoever makes pkgs does, by name, as lib.mkFleet, this
# flake's nixosConfigurations and the VM tests do (`venueNixpkgsConfig` in
# nix/pkgs-config.nix).
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.jitsi;
  host = cfg.hostName;
  turn = venue.turn;

  # Secrets reach prosody as environment variables: nixpkgs renders its
  # configuration through envsubst at start, so only "$NAME" is in the store.
  envFile = "/run/venue-jitsi/prosody.env";

  # The videobridge's private HTTP server (jvb reference.conf: 127.0.0.1:8080).
  colibriPrivatePort = 8080;
  allowOnly = addresses: lib.concatMapStrings (a: "allow ${a};\n") addresses + "deny all;\n";
  statsFrom = [ "127.0.0.1" "::1" ] ++ lib.optional (cfg.publicAddress != null) cfg.publicAddress ++ cfg.statsFrom;
in
{
  imports = [ ./common.nix ];

  options.services.venue.jitsi = with lib.types; {
    enable = lib.mkEnableOption "the venue's main Jitsi Meet host";

    hostName = lib.mkOption {
      type = str;
      example = "lpc-2020-jitsi-1.lpc.example.org";
      description = "Public name of the Jitsi Meet web app and XMPP domain.";
    };

    publicAddress = lib.mkOption {
      type = nullOr str;
      default = null;
      example = "203.0.113.7";
      description = ''
        Public IPv4 address the videobridge announces. Set it together with
        {option}`localAddress`; when both are null the bridge asks the
        venue's TURN server (as STUN) for its public address.
      '';
    };

    localAddress = lib.mkOption {
      type = nullOr str;
      default = null;
      example = "10.0.0.2";
      description = "Address of the bridge's interface (equal to publicAddress when there is no NAT).";
    };

    jwt = {
      enable = lib.mkOption {
        type = bool;
        default = true;
        description = ''
          Admit only clients with a token (HS256) signed with
          {option}`jwt.secretFile` and issued for {option}`jwt.appId`:
          the portal signs one per attendee and room.
        '';
      };

      appId = lib.mkOption {
        type = str;
        default = "venue";
        description = "Expected `iss` of the tokens (prosody's app_id).";
      };

      secretFile = lib.mkOption {
        type = str;
        default = "${venue.secretsDir}/jwt-secret";
        defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/jwt-secret"'';
        description = "File holding the HS256 secret shared with the portal.";
      };
    };

    bridges = {
      passwordFile = lib.mkOption {
        type = str;
        default = "${venue.secretsDir}/jvb-muc-password";
        defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/jvb-muc-password"'';
        description = ''
          Password of the `jvb` XMPP account, shared by every videobridge.
          When the file is missing, the local bridge gets a generated one and
          no extra bridge can join.
        '';
      };

      acceptRemote = lib.mkOption {
        type = bool;
        default = false;
        description = ''
          Open XMPP client port 5222 so that extra videobridge hosts
          (services.venue.jvb) can log in and join the bridge MUC.
        '';
      };
    };

    serverId = lib.mkOption {
      type = str;
      default = "main";
      description = "This bridge's id in colibri websocket URLs (`/colibri-ws/<id>/`).";
    };

    statsFrom = lib.mkOption {
      type = listOf str;
      default = [ ];
      example = [ "203.0.113.2" ];
      description = ''
        Addresses that may read how many people are in each room
        (`/room-size`, prosody's mod_muc_size) and the bridge's load
        (`/colibri/stats`): the portal's. This host itself always may (a
        portal beside it reaches its public name through its own public
        address); everyone else gets 403.
      '';
    };

    colibriPort = lib.mkOption {
      type = port;
      default = 9090;
      description = "Local port of the videobridge's public HTTP server (colibri websockets).";
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      services.jitsi-meet = {
        enable = true;
        hostName = host;
        config = lib.mkIf (turn.host != null) {
          p2p.stunServers = [{ urls = "stun:${turn.host}:${toString turn.port}"; }];
        };
      };

      services.jitsi-videobridge = {
        openFirewall = true;
        nat = {
          inherit (cfg) publicAddress localAddress;
          harvesterAddresses = lib.mkIf (turn.host != null) [ "${turn.host}:${toString turn.port}" ];
        };
        # Clients reach the bridge over a websocket proxied by nginx, so one
        # TLS port serves the page, XMPP and the bridge channel.
        # /colibri/stats on the private HTTP server (127.0.0.1:8080).
        colibriRestApi = true;
        config.videobridge = {
          http-servers.public = {
            host = "127.0.0.1";
            port = cfg.colibriPort;
          };
          websockets = {
            enabled = true;
            domain = "${host}:443";
            tls = true;
            server-id = cfg.serverId;
          };
        };
      };

      services.nginx.virtualHosts.${host} = venue.internal.vhostTls // {
        locations = {
          "~ ^/colibri-ws/${cfg.serverId}/(.*)" = {
            proxyPass = "http://127.0.0.1:${toString cfg.colibriPort}/colibri-ws/${cfg.serverId}/$1$is_args$args";
            proxyWebsockets = true;
          };
          # For the portal's room and bridge status, and for nobody else.
          "= /room-size" = {
            proxyPass = "http://127.0.0.1:5280/room-size";
            extraConfig = allowOnly statsFrom;
          };
          "= /colibri/stats" = {
            proxyPass = "http://127.0.0.1:${toString colibriPrivatePort}/colibri/stats";
            extraConfig = allowOnly statsFrom;
          };
        };
      };

      # No anonymous logins: nixpkgs always declares this host, and a session
      # on it carries no token, which token_verification lets into any room.
      services.prosody.virtualHosts."guest.${host}".enabled = lib.mkForce false;

      # Copies the agent's secrets to where the nixpkgs units read them;
      # root reads the 0400 files, the copies stay outside the store.
      systemd.services.venue-jitsi-secrets = {
        description = "Hand the venue's secrets to prosody and the videobridge";
        wantedBy = [ "multi-user.target" ];
        before = [ "prosody.service" "jicofo.service" "jitsi-videobridge2.service" "jitsi-meet-init-secrets.service" ];
        requiredBy = [ "prosody.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          UMask = "0077";
        };
        script = ''
          mkdir -p /run/venue-jitsi
          : > ${envFile}
          ${lib.optionalString cfg.jwt.enable ''
            printf 'VENUE_JWT_SECRET=%s\n' "$(cat ${lib.escapeShellArg cfg.jwt.secretFile})" >> ${envFile}
          ''}
          ${lib.optionalString (turn.host != null) ''
            printf 'VENUE_TURN_SECRET=%s\n' "$(cat ${lib.escapeShellArg turn.secretFile})" >> ${envFile}
          ''}
          # nixpkgs' jitsi-meet module reads the local bridge's password from
          # this fixed path and only generates it when it is missing.
          if [ -e ${lib.escapeShellArg cfg.bridges.passwordFile} ]; then
            install -d -m 0750 -g jitsi-meet /var/lib/jitsi-meet
            install -m 0640 -g jitsi-meet ${lib.escapeShellArg cfg.bridges.passwordFile} /var/lib/jitsi-meet/videobridge-secret
          ${lib.optionalString cfg.bridges.acceptRemote ''
            else
              echo "missing ${cfg.bridges.passwordFile}: extra videobridges could not join" >&2
              exit 1
          ''}
          fi
        '';
      };

      systemd.services.prosody.serviceConfig = {
        EnvironmentFile = [ envFile ];
        # The rendered configuration in /run/prosody holds secrets.
        UMask = "0027";
      };

      services.prosody.extraConfig = lib.mkIf (turn.host != null) (lib.mkBefore ''
        -- TURN credentials for clients (XEP-0215), from the venue's coturn.
        external_service_secret = "$VENUE_TURN_SECRET"
        external_services = {
          { type = "stun", host = "${turn.host}", port = ${toString turn.port} },
          { type = "turn", host = "${turn.host}", port = ${toString turn.port}, transport = "udp", secret = true, ttl = ${toString turn.ttl}, algorithm = "turn" },
          { type = "turns", host = "${turn.host}", port = ${toString turn.tlsPort}, transport = "tcp", secret = true, ttl = ${toString turn.ttl}, algorithm = "turn" },
        }
      '');

      networking.firewall.allowedTCPPorts = [ 80 443 ] ++ lib.optional cfg.bridges.acceptRemote 5222;

      services.venue.healthz.checks.jitsi = null;
    }

    (lib.mkIf cfg.jwt.enable {
      # mod_auth_token and its luajwtjitsi come with jitsi-meet-prosody; they
      # need these Lua libraries, which nixpkgs' prosody does not carry.
      services.prosody.package = pkgs.prosody.override {
        withExtraLuaPackages = p: [ p.cjson p.basexx p.luaossl ];
      };
      # Comes after nixpkgs' `authentication = "jitsi-anonymous"` in the same
      # VirtualHost block, so it wins. jitsi_session reads the token from the
      # websocket URL (mod_auth_token itself only looks at BOSH).
      #
      # Then token_verification on the conference MUC, so that a token opens
      # only the room it names. nixpkgs declares that MUC in a list entry we
      # cannot extend; prosody lets a Component be entered again, and since
      # 13.0 appends to the list nixpkgs rendered for it (whatever nixpkgs
      # puts there, now or later), rather than replacing it.
      services.prosody.virtualHosts.${host}.extraConfig = lib.mkAfter ''
        authentication = "token"
        app_id = "${cfg.jwt.appId}"
        app_secret = "$VENUE_JWT_SECRET"
        allow_empty_token = false
        modules_enabled = { "jitsi_session", "muc_size" }

        Component "conference.${host}" "muc"
          modules_enabled:append { "token_verification" }
      '';
    })

    # A container shares the host's kernel: leave its sysctls alone.
    (lib.mkIf config.boot.isContainer {
      boot.kernel.sysctl = {
        "net.core.rmem_max" = lib.mkForce null;
        "net.core.netdev_max_backlog" = lib.mkForce null;
      };
    })
  ]);
}
