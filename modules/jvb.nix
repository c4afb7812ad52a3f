# An extra videobridge host: only jitsi-videobridge, logged in to the main
# Jitsi host's prosody as the shared `jvb` account and joining its bridge
# MUC under its own nickname, so jicofo spreads conferences over it. Clients
# reach it directly, through its own nginx, for the colibri websocket.
#
# Read against nixpkgs (newest stored copies): nixos/modules/services/
# web-apps/jitsi-meet.nix (the bridge MUC is `jvbbrewery@internal.auth.<host>`,
# the `jvb` account lives on `auth.<host>`, prosody listens for clients on
# 5222 unless `prosody.lockdown`, which venue leaves off) and
# nixos/modules/services/networking/jitsi-videobridge.nix (xmppConfigs,
# nat, openFirewall: 10000/udp).
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
      description = "Where the main host's prosody accepts XMPP clients (port 5222).";
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
          hostName = cfg.xmppAddress;
          domain = "auth.${cfg.mainHost}";
          userName = "jvb";
          # systemd hands the root-only file to the dynamic user.
          passwordFile = "/run/credentials/jitsi-videobridge2.service/jvb-muc-password";
          mucJids = "jvbbrewery@internal.auth.${cfg.mainHost}";
          mucNickname = cfg.nickname;
          # The main host's prosody presents a self-signed certificate.
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

      systemd.services.jitsi-videobridge2.serviceConfig.LoadCredential = [
        "jvb-muc-password:${cfg.passwordFile}"
      ];

      services.nginx.virtualHosts.${cfg.hostName} = venue.internal.vhostTls // {
        locations."~ ^/colibri-ws/${cfg.nickname}/(.*)" = {
          proxyPass = "http://127.0.0.1:${toString cfg.colibriPort}/colibri-ws/${cfg.nickname}/$1$is_args$args";
          proxyWebsockets = true;
        };
        # The portal's bridge status, and nobody else's.
        locations."= /colibri/stats" = {
          proxyPass = "http://127.0.0.1:8080/colibri/stats";
          extraConfig = lib.concatMapStrings (a: "allow ${a};\n")
            ([ "127.0.0.1" "::1" ] ++ lib.optional (cfg.publicAddress != null) cfg.publicAddress ++ cfg.statsFrom)
          + "deny all;\n";
        };
      };

      networking.firewall.allowedTCPPorts = [ 80 443 ];

      services.venue.healthz.checks.jvb = null;
    }

    (lib.mkIf config.boot.isContainer {
      boot.kernel.sysctl = {
        "net.core.rmem_max" = lib.mkForce null;
        "net.core.netdev_max_backlog" = lib.mkForce null;
      };
    })
  ]);
}
