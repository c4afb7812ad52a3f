# The venue's TURN server: nixpkgs' services.coturn with TURN REST
# credentials (use-auth-secret) from the agent's secret, TLS on 5349 with an
# ACME certificate, a fixed relay port range and the firewall to match.
# Jitsi, BigBlueButton and the portal hand out credentials for it.
{ config, lib, ... }:

let
  venue = config.services.venue;
  cfg = venue.coturn;
  certDir = config.security.acme.certs.${cfg.hostName}.directory;
  acmeRoot = "/var/lib/acme/acme-challenge";
in
{
  imports = [ ./common.nix ];

  options.services.venue.coturn = with lib.types; {
    enable = lib.mkEnableOption "the venue's coturn TURN server";

    hostName = lib.mkOption {
      type = str;
      example = "lpc-2020-coturn-1.lpc.example.org";
      description = "Public name of this TURN server (the TLS certificate's name).";
    };

    realm = lib.mkOption {
      type = str;
      default = venue.domain;
      defaultText = lib.literalExpression "config.services.venue.domain";
      description = "TURN realm.";
    };

    secretFile = lib.mkOption {
      type = str;
      default = venue.turn.secretFile;
      defaultText = lib.literalExpression "config.services.venue.turn.secretFile";
      description = "File holding the static-auth-secret the credentials are derived from.";
    };

    minPort = lib.mkOption {
      type = port;
      default = 49152;
      description = "Lowest UDP relay port.";
    };

    maxPort = lib.mkOption {
      type = port;
      default = 65535;
      description = "Highest UDP relay port.";
    };

    deniedPeerRanges = lib.mkOption {
      type = listOf str;
      default = [
        "0.0.0.0-0.255.255.255"
        "10.0.0.0-10.255.255.255"
        "100.64.0.0-100.127.255.255"
        "127.0.0.0-127.255.255.255"
        "169.254.0.0-169.254.255.255"
        "172.16.0.0-172.31.255.255"
        "192.168.0.0-192.168.255.255"
        "::1"
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
      ];
      description = ''
        Peer addresses the server refuses to relay to, so that a TURN
        account cannot reach the servers' private networks.
      '';
    };

    tls = lib.mkOption {
      type = bool;
      default = true;
      description = "Offer TURN over TLS on 5349 with an ACME certificate for {option}`hostName`.";
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      services.coturn = {
        enable = true;
        realm = cfg.realm;
        use-auth-secret = true;
        # systemd hands the root-only file to the turnserver user.
        static-auth-secret-file = "/run/credentials/coturn.service/turn-secret";
        min-port = cfg.minPort;
        max-port = cfg.maxPort;
        no-cli = true;
        no-tls = !cfg.tls;
        no-dtls = !cfg.tls;
        cert = lib.mkIf cfg.tls "${certDir}/fullchain.pem";
        pkey = lib.mkIf cfg.tls "${certDir}/key.pem";
        extraConfig = ''
          no-multicast-peers
          fingerprint
        '' + lib.concatMapStrings (r: "denied-peer-ip=${r}\n") cfg.deniedPeerRanges;
      };

      systemd.services.coturn.serviceConfig.LoadCredential = [ "turn-secret:${cfg.secretFile}" ];

      networking.firewall = {
        allowedTCPPorts = [ 3478 ] ++ lib.optional cfg.tls 5349;
        allowedUDPPorts = [ 3478 ] ++ lib.optional cfg.tls 5349;
        allowedUDPPortRanges = [{ from = cfg.minPort; to = cfg.maxPort; }];
      };

      # nginx serves /healthz and, with TLS, the ACME challenge.
      services.venue.healthz.checks.coturn = null;
    }

    (lib.mkIf cfg.tls {
      # A certificate of its own, readable by coturn; nginx only answers the
      # HTTP-01 challenge for it and never reads it. (Not through nginx's
      # useACMEHost: nginx would then assert that it can read the key.)
      security.acme.certs.${cfg.hostName} = {
        webroot = acmeRoot;
        group = "turnserver";
        reloadServices = [ "coturn.service" ];
      };
      services.nginx.virtualHosts.${cfg.hostName}.locations."^~ /.well-known/acme-challenge/".root = acmeRoot;
      systemd.services.coturn = {
        wants = [ "acme-${cfg.hostName}.service" ];
        after = [ "acme-${cfg.hostName}.service" ];
      };
    })
  ]);
}
