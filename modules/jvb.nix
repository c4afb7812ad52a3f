# An extra videobridge host: only jitsi-videobridge, logged in to the main
# Jitsi host's prosody as the shared `jvb` account and joining its bridge
# MUC under its own nickname, so jicofo spreads conferences over it. Clients
# reach it directly, through its own nginx, for the colibri websocket.
#
# Read against nixpkgs (newest stored copies): nixos/modules/services/
# web-apps/jitsi-meet.nix (search index file 146887262: the bridge MUC is
# `jvbbrewery@internal.auth.<host>`, the `jvb` account lives on
# `auth.<host>`) and nixos/modules/services/networking/jitsi-videobridge.nix
# (file 559257253: xmppConfigs with hostName/domain/passwordFile/
# disableCertificateVerification, nat, openFirewall: 10000/udp; the script
# reads each password with `$(cat …)`, which does not stop on an empty or
# missing file; DynamicUser; no Restart=).
#
# The connection to the main host: jicoco's MucClient (search index file
# 41610657530) checks prosody's certificate against the XMPP domain
# `auth.<main host>`, which the event's `*.<domain>` certificate does not
# name, and uses STARTTLS only "if possible" towards `localhost`. So the
# bridge talks XMPP to `localhost:5222`, where this host's nginx opens TLS
# to the main host's bridge port (jitsi.nix `bridges.port`) and verifies
# the certificate for `<main host>` against the system's CAs
# (/etc/ssl/certs/ca-certificates.crt, with security.pki's additions).
{ config, lib, ... }:

let
  venue = config.services.venue;
  cfg = venue.jvb;
  turn = venue.turn;
in
{
  imports = [ ./common.nix ];

  options.services.venue.jvb = with lib.types; {
    enable = lib.mkEnableOption "an extra Jitsi videobridge host";

    mainHost = lib.mkOption {
      type = str;
      example = "lpc-2020-jitsi-1.lpc.example.org";
      description = "{option}`services.venue.jitsi.hostName` of the main host (the XMPP domain).";
    };

    xmppAddress = lib.mkOption {
      type = str;
      default = cfg.mainHost;
      defaultText = lib.literalExpression "config.services.venue.jvb.mainHost";
      description = ''
        Address (or name) of the main host, where its nginx accepts bridges
        over TLS on {option}`xmppPort`. An address keeps nginx here from
        depending on DNS when it starts; the certificate is checked for
        {option}`mainHost` either way.
      '';
    };

    xmppPort = lib.mkOption {
      type = port;
      default = 5222;
      description = "The main host's {option}`services.venue.jitsi.bridges.port`.";
    };

    hostName = lib.mkOption {
      type = str;
      example = "lpc-2020-jvb-1.lpc.example.org";
      description = "Public name of this host; clients open the colibri websocket here.";
    };

    nickname = lib.mkOption {
      type = str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "Nickname in the bridge MUC; must differ between bridges.";
    };

    passwordFile = lib.mkOption {
      type = str;
      default = "${venue.secretsDir}/jvb-muc-password";
      defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/jvb-muc-password"'';
      description = "Password of the shared `jvb` XMPP account.";
    };

    publicAddress = lib.mkOption {
      type = nullOr str;
      default = null;
      description = "Public IPv4 address the bridge announces (with {option}`localAddress`).";
    };

    publicAddress6 = lib.mkOption {
      type = nullOr str;
      default = null;
      description = "This host's public IPv6 address (allowed to read `/colibri/stats`, like {option}`publicAddress`).";
    };

    localAddress = lib.mkOption {
      type = nullOr str;
      default = null;
      description = "Address of the bridge's interface.";
    };

    statsFrom = lib.mkOption {
      type = listOf str;
      default = [ ];
      description = "Addresses that may read the bridge's load (`/colibri/stats`): the portal's (and this host's own, always).";
    };

    colibriPort = lib.mkOption {
      type = port;
      default = 9090;
      description = "Local port of the videobridge's public HTTP server (colibri websockets).";
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      services.jitsi-videobridge = {
        enable = true;
        openFirewall = true;
        nat = {
          inherit (cfg) publicAddress localAddress;
          harvesterAddresses = lib.mkIf (turn.host != null) [ "${turn.host}:${toString turn.port}" ];
        };
        xmppConfigs.${cfg.mainHost} = {
          # This host's nginx, which carries the stream over verified TLS.
          hostName = "localhost";
          domain = "auth.${cfg.mainHost}";
          userName = "jvb";
          # systemd hands the root-only file to the dynamic user.
          passwordFile = "/run/credentials/jitsi-videobridge2.service/jvb-muc-password";
          mucJids = "jvbbrewery@internal.auth.${cfg.mainHost}";
          mucNickname = cfg.nickname;
          # Only for prosody's own STARTTLS inside that tunnel (its
          # self-signed certificate, as for the main host's local bridge);
          # the hop over the network is checked by nginx below.
          disableCertificateVerification = true;
        };
        # /colibri/stats on the private HTTP server (127.0.0.1:8080).
        colibriRestApi = true;
        config.videobridge = {
          http-servers.public = {
            host = "127.0.0.1";
            port = cfg.colibriPort;
          };
          websockets = {
            enabled = true;
            domain = "${cfg.hostName}:443";
            tls = true;
            server-id = cfg.nickname;
          };
        };
      };

      systemd.services.jitsi-videobridge2 = {
        # Its way to the main host is this nginx (it retries until then).
        wants = [ "nginx.service" ];
        after = [ "nginx.service" ];
        serviceConfig = {
          LoadCredential = [ "jvb-muc-password:${cfg.passwordFile}" ];
          # An empty file would pass LoadCredential= and log in with "".
          ExecStartPre = lib.mkBefore [ (venue.secrets.requireFilesCommand "jvb" [ cfg.passwordFile ]) ];
        };
      };
      # Restarted when `venue deploy` writes the password (also after it
      # refused to start without it).
      services.venue.secrets.consumers."jitsi-videobridge2.service" = [ cfg.passwordFile ];

      # XMPP to the main host over TLS, the certificate checked for its name.
      services.nginx.streamConfig = ''
        server {
          listen 127.0.0.1:5222;
          listen [::1]:5222;
          proxy_pass ${cfg.xmppAddress}:${toString cfg.xmppPort};
          proxy_ssl on;
          proxy_ssl_server_name on;
          proxy_ssl_name ${cfg.mainHost};
          proxy_ssl_verify on;
          proxy_ssl_verify_depth 4;
          proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
        }
      '';

      services.nginx.virtualHosts.${cfg.hostName} = venue.internal.vhostTls // {
        locations."~ ^/colibri-ws/${cfg.nickname}/(.*)" = {
          proxyPass = "http://127.0.0.1:${toString cfg.colibriPort}/colibri-ws/${cfg.nickname}/$1$is_args$args";
          proxyWebsockets = true;
        };
        # The portal's bridge status, and nobody else's.
        locations."= /colibri/stats" = {
          proxyPass = "http://127.0.0.1:8080/colibri/stats";
          extraConfig = lib.concatMapStrings (a: "allow ${a};\n")
            ([ "127.0.0.1" "::1" ] ++ lib.filter (a: a != null) [ cfg.publicAddress cfg.publicAddress6 ] ++ cfg.statsFrom)
          + "deny all;\n";
        };
      };

      networking.firewall.allowedTCPPorts = [ 80 443 ];

      # The bridge's own health (its private HTTP server, 127.0.0.1:8080).
      services.venue.healthz.checks.jvb = "http://127.0.0.1:8080/about/health";
    }

    (lib.mkIf config.boot.isContainer {
      boot.kernel.sysctl = {
        "net.core.rmem_max" = lib.mkForce null;
        "net.core.netdev_max_backlog" = lib.mkForce null;
      };
    })
  ]);
}
