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
# - nixos/modules/services/web-apps/jitsi-meet.nix, newest stored copy
#   (search index file 146887262, the prosody.lockdown / jigasi revision):
#   prosody gets `reloadIfChanged = true`; its own `lockdown` binds
#   httpInterfaces to 127.0.0.1 and c2s to 127.0.0.1 (which extra bridges
#   could then not reach), and turns proxy65 off; nginx reaches prosody at
#   `localhost:5280`; the local bridge and jicofo connect to `localhost`.
# - nixos/modules/services/networking/prosody.nix @ daaf9122b9fa: preStart
#   renders /etc/prosody/prosody.cfg.lua through envsubst into
#   /run/prosody/prosody.cfg.lua as User=prosody, and ExecReload only sends
#   SIGHUP, so a reload re-reads the old rendering; httpInterfaces and
#   httpsInterfaces default to every address ("*", "::"), httpsPorts to 5281.
# - nixos/modules/services/networking/jicofo.nix @ a7e6638a4089 and
#   jitsi-videobridge.nix (file 559257253): both units read their password
#   with `$(cat …)` in the script, which does not stop on a missing file.
# - jitsi/jicoco MucClientManager/MucClient (search index file 41610657530):
#   Smack checks the server's certificate against the XMPP domain
#   (`auth.<host>`), which the event's `*.<domain>` certificate does not
#   name. Extra bridges therefore reach prosody through a TLS port of nginx
#   on this host that presents the event's certificate for `<host>`, and
#   their own nginx verifies it (see jvb.nix).
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
  statsFrom = [ "127.0.0.1" "::1" ]
    ++ lib.filter (a: a != null) [ cfg.publicAddress cfg.publicAddress6 ]
    ++ cfg.statsFrom;

  # What the units read from secretsDir: each must be there, non-empty.
  requiredSecrets = lib.optional cfg.jwt.enable cfg.jwt.secretFile
    ++ lib.optional (turn.host != null) turn.secretFile
    ++ lib.optional cfg.bridges.acceptRemote cfg.bridges.passwordFile;

  # The units that start with what venue-jitsi-secrets hands over.
  jitsiUnits = [ "prosody.service" "jicofo.service" "jitsi-videobridge2.service" ];

  # Where nginx takes the extra bridges' TLS.
  bridgeListen = lib.optional (cfg.localAddress != null) cfg.localAddress
    ++ lib.optional (cfg.publicAddress6 != null) "[${cfg.publicAddress6}]";

  # The certificate nginx presents to extra bridges: the one of this host's
  # web app (the agent's, or this host's ACME certificate).
  bridgeTls =
    if venue.tls.certificateFile != null then {
      cert = venue.internal.vhostTls.sslCertificate;
      key = venue.internal.vhostTls.sslCertificateKey;
    } else
      let dir = config.security.acme.certs.${host}.directory;
      in { cert = "${dir}/fullchain.pem"; key = "${dir}/key.pem"; };
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

    publicAddress6 = lib.mkOption {
      type = nullOr str;
      default = null;
      example = "2001:db8::7";
      description = ''
        This host's public IPv6 address: a portal on the same host reaches
        `/room-size` and `/colibri/stats` from it (or from
        {option}`publicAddress`) when the public name resolves to it.
      '';
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
          Let extra videobridge hosts (services.venue.jvb) log in and join
          the bridge MUC: nginx accepts TLS on {option}`bridges.port` with
          this host's web certificate and passes the stream to prosody's
          XMPP client port, which itself listens on loopback only. Needs
          {option}`localAddress` or {option}`publicAddress6`; the password
          file is then required.
        '';
      };

      port = lib.mkOption {
        type = port;
        default = 5222;
        description = ''
          TLS port (opened in the firewall) where extra videobridges reach
          prosody: nginx listens on it on {option}`localAddress` and
          {option}`publicAddress6`, prosody's own XMPP client port on
          loopback. The default is the XMPP client port, which the agent's
          cloud firewall opens to the event's servers only.
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
      # root reads the 0400 files, the copies stay outside the store. Fails
      # without them, and then prosody, jicofo and the bridge do not start
      # (Requires=): no prosody that would take tokens signed with an empty
      # key. The path unit of common.nix starts it all once they arrive.
      systemd.services.venue-jitsi-secrets = {
        description = "Hand the venue's secrets to prosody and the videobridge";
        wantedBy = [ "multi-user.target" ];
        before = jitsiUnits ++ [ "jitsi-meet-init-secrets.service" ];
        requiredBy = jitsiUnits;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          UMask = "0077";
        };
        script = venue.secrets.requireFiles requiredSecrets + ''
          mkdir -p /run/venue-jitsi
          : > ${envFile}.new
          ${lib.optionalString cfg.jwt.enable ''
            secret=$(cat ${lib.escapeShellArg cfg.jwt.secretFile})
            printf 'VENUE_JWT_SECRET=%s\n' "$secret" >> ${envFile}.new
          ''}
          ${lib.optionalString (turn.host != null) ''
            secret=$(cat ${lib.escapeShellArg turn.secretFile})
            printf 'VENUE_TURN_SECRET=%s\n' "$secret" >> ${envFile}.new
          ''}
          mv ${envFile}.new ${envFile}
          # nixpkgs' jitsi-meet module reads the local bridge's password from
          # this fixed path and only generates it when it is missing.
          if [ -s ${lib.escapeShellArg cfg.bridges.passwordFile} ]; then
            install -d -m 0750 -g jitsi-meet /var/lib/jitsi-meet
            install -m 0640 -g jitsi-meet ${lib.escapeShellArg cfg.bridges.passwordFile} /var/lib/jitsi-meet/videobridge-secret
          fi
        '';
      };

      # Restarted (the three with venue-jitsi-secrets, by Requires=) when
      # `venue deploy` writes new secrets, also after they refused to start.
      services.venue.secrets.consumers = lib.genAttrs ([ "venue-jitsi-secrets.service" ] ++ jitsiUnits) (_: requiredSecrets);

      systemd.services.prosody = {
        # A changed configuration or secret takes effect only through a new
        # rendering: restart, not nixpkgs' SIGHUP reload of the old one.
        reloadIfChanged = lib.mkForce false;
        # Refuses to render a configuration with an empty secret (the
        # environment file is there, but a value could be missing).
        preStart = lib.mkBefore (lib.concatMapStrings
          (var: ''
            if [ -z "''${${var}:-}" ]; then
              echo "${var} is empty in ${envFile}: refusing to start" >&2
              exit 1
            fi
          '')
          (lib.optional cfg.jwt.enable "VENUE_JWT_SECRET" ++ lib.optional (turn.host != null) "VENUE_TURN_SECRET"));
        serviceConfig = {
          EnvironmentFile = [ envFile ];
          # The rendered configuration in /run/prosody holds secrets.
          UMask = "0027";
          # `systemctl reload` renders anew (with the environment file read
          # again) before the SIGHUP.
          ExecReload = lib.mkForce [
            "${pkgs.envsubst}/bin/envsubst -i ${config.environment.etc."prosody/prosody.cfg.lua".source} -o /run/prosody/prosody.cfg.lua"
            "${pkgs.coreutils}/bin/kill -HUP $MAINPID"
          ];
        };
      };

      # HTTP (BOSH, websockets, /room-size) only for nginx on this host;
      # no HTTPS or file proxy listeners at all. XMPP clients: the local
      # jicofo and bridge, and extra bridges through nginx (below).
      services.prosody = {
        httpInterfaces = [ "127.0.0.1" "::1" ];
        httpsPorts = [ ];
        modules.proxy65 = false;
      };
      services.prosody.extraConfig = lib.mkMerge [
        (lib.mkBefore ''
          c2s_interfaces = { "127.0.0.1", "::1" }
          s2s_interfaces = { "127.0.0.1", "::1" }
          -- Requests by address (the health check) are for the main host.
          http_default_host = "${host}"
        '')
        (lib.mkIf (turn.host != null) (lib.mkBefore ''
          -- TURN credentials for clients (XEP-0215), from the venue's coturn.
          external_service_secret = "$VENUE_TURN_SECRET"
          external_services = {
            { type = "stun", host = "${turn.host}", port = ${toString turn.port} },
            { type = "turn", host = "${turn.host}", port = ${toString turn.port}, transport = "udp", secret = true, ttl = ${toString turn.ttl}, algorithm = "turn" },
            { type = "turns", host = "${turn.host}", port = ${toString turn.tlsPort}, transport = "tcp", secret = true, ttl = ${toString turn.ttl}, algorithm = "turn" },
          }
        ''))
      ];

      networking.firewall.allowedTCPPorts = [ 80 443 ] ++ lib.optional cfg.bridges.acceptRemote cfg.bridges.port;

      # prosody's own BOSH endpoint answers GET with 200 when it runs.
      services.venue.healthz.checks.jitsi = "http://127.0.0.1:5280/http-bind";
    }

    (lib.mkIf cfg.bridges.acceptRemote {
      assertions = [{
        assertion = bridgeListen != [ ];
        message = "services.venue.jitsi.bridges.acceptRemote: set localAddress or publicAddress6, where nginx takes the bridges' TLS.";
      }];
      # Extra bridges log in over TLS with this host's web certificate,
      # which they verify against the system's CAs (jvb.nix); prosody sees a
      # loopback connection. On this host's own addresses only: prosody has
      # the same port on loopback.
      services.nginx.streamConfig = ''
        server {
          ${lib.concatMapStrings (a: "listen ${a}:${toString cfg.bridges.port} ssl;\n") bridgeListen}
          ssl_certificate ${bridgeTls.cert};
          ssl_certificate_key ${bridgeTls.key};
          proxy_pass 127.0.0.1:5222;
        }
      '';
      # The address may come up after nginx starts (DHCP).
      boot.kernel.sysctl = lib.mkIf (!config.boot.isContainer) {
        "net.ipv4.ip_nonlocal_bind" = 1;
        "net.ipv6.ip_nonlocal_bind" = 1;
      };
    })

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
