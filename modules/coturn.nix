# The venue's TURN server: nixpkgs' services.coturn with TURN REST
# credentials (use-auth-secret) from the agent's secret, TLS on 5349 with an
# ACME certificate, a fixed relay port range and the firewall to match.
# Jitsi, BigBlueButton and the portal hand out credentials for it.
#
# Read against nixpkgs (the newest stored copies):
# - nixos/modules/services/networking/coturn.nix @ 4f58def5e6e9: the unit
#   runs as `turnserver` (also its preStart, which reads
#   static-auth-secret-file), renders listening-port/tls-listening-port from
#   its own options (default 3478/5349), has no ExecReload, and writes the
#   runtime config to /run/coturn (tmpfiles, 0700 turnserver).
# - nixos/modules/security/acme/default.nix @ c9634190fe4c: every cert's base
#   unit chgrps `<webroot>/.well-known/acme-challenge` to the cert's group. A
#   TURN cert in group `turnserver` on the webroot nginx's own certs use
#   (group nginx) made the challenge directory unreadable for nginx, and flip
#   between groups on a host with both. So the TURN cert keeps nginx's group
#   and coturn gets the key through systemd credentials (read by root at start).
{ config, lib, ... }:

let
  venue = config.services.venue;
  cfg = venue.coturn;
  acmeRoot = "/var/lib/acme/acme-challenge";
  credDir = "/run/credentials/coturn.service";

  # The agent's certificate when it supplies one, else this host's own ACME cert.
  ownCert = venue.tls.certificateFile == null;
  certFiles =
    if ownCert then
      let dir = config.security.acme.certs.${cfg.hostName}.directory;
      in { cert = "${dir}/fullchain.pem"; key = "${dir}/key.pem"; }
    else { cert = venue.tls.certificateFile; key = venue.tls.keyFile; };
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
        listening-port = venue.turn.port;
        tls-listening-port = venue.turn.tlsPort;
        realm = cfg.realm;
        use-auth-secret = true;
        # systemd hands the root-only file to the turnserver user.
        static-auth-secret-file = "/run/credentials/coturn.service/turn-secret";
        min-port = cfg.minPort;
        max-port = cfg.maxPort;
        no-cli = true;
        no-tls = !cfg.tls;
        no-dtls = !cfg.tls;
        cert = lib.mkIf cfg.tls "${credDir}/tls-cert";
        pkey = lib.mkIf cfg.tls "${credDir}/tls-key";
        extraConfig = ''
          no-multicast-peers
          fingerprint
        '' + lib.concatMapStrings (r: "denied-peer-ip=${r}\n") cfg.deniedPeerRanges;
      };

      systemd.services.coturn.serviceConfig.LoadCredential =
        [ "turn-secret:${cfg.secretFile}" ]
        ++ lib.optionals cfg.tls [ "tls-cert:${certFiles.cert}" "tls-key:${certFiles.key}" ];

      networking.firewall = {
        allowedTCPPorts = [ venue.turn.port ] ++ lib.optional cfg.tls venue.turn.tlsPort;
        allowedUDPPorts = [ venue.turn.port ] ++ lib.optional cfg.tls venue.turn.tlsPort;
        allowedUDPPortRanges = [{ from = cfg.minPort; to = cfg.maxPort; }];
      };

      # nginx serves /healthz and, with TLS, the ACME challenge.
      services.venue.healthz.checks.coturn = null;
    }

    # The agent's certificate: restarted when `venue deploy` replaces it
    # (coturn has no reload, and credentials are copied at start).
    (lib.mkIf (cfg.tls && !ownCert) {
      services.venue.tls.reloadServices = [ "coturn.service" ];
    })

    (lib.mkIf (cfg.tls && ownCert) {
      # A certificate of its own; nginx answers its HTTP-01 challenge. Same
      # group as nginx's certificates, so the shared webroot keeps one group
      # (see above); coturn reads it through LoadCredential, as root.
      security.acme.certs.${cfg.hostName} = {
        webroot = acmeRoot;
        group = config.services.nginx.group;
        # try-reload-or-restart: a restart, which copies the credentials anew.
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
