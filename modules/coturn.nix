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
#   The preStart's `head -n1 <secret> || :` turns a missing or empty secret
#   into an empty static-auth-secret, so a root ExecStartPre checks first.
#   no-tcp-relay is its own option there (bool, default false).
# - coturn/coturn src/apps/stunclient/stunclient.c @ 0496635eddc6: exits 0
#   whatever the answer and waits for it without a timeout; it prints "UDP
#   reflexive addr" only for a binding success response. The health check
#   wraps it in `timeout` and looks for that line.
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.coturn;
  acmeRoot = "/var/lib/acme/acme-challenge";
  credDir = "/run/credentials/coturn.service";

  # The agent's certificate when it supplies one, else this host's own ACME cert.
  ownCert = venue.tls.certificateFile == null;
  secretFiles = [ cfg.secretFile ] ++ lib.optionals (cfg.tls && !ownCert) [ certFiles.cert certFiles.key ];

  # Media servers on this host are legitimate relay peers on its own
  # addresses (clients behind strict NATs reach a bridge through TURN).
  mediaHere = lib.any (role: (venue.${role}.enable or false)) [ "jitsi" "jvb" "bbb" ];

  # `/healthz/coturn`: a STUN binding request to coturn's own UDP listener,
  # answered over HTTP for nginx (one socket-activated instance per request).
  healthCheck = pkgs.writeShellScript "venue-healthz-coturn" ''
    # Read the request up to its blank line, so closing answers it cleanly.
    while IFS= read -r -t 5 line && [ "''${line%$'\r'}" != "" ]; do :; done
    if timeout 3 ${pkgs.coturn}/bin/turnutils_stunclient -p ${toString venue.turn.port} 127.0.0.1 2>&1 \
        | grep -q 'reflexive addr'; then
      printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n'
    else
      printf 'HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\ncoturn does not answer STUN on 127.0.0.1:%s\n' ${toString venue.turn.port}
    fi
  '';
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

    ownAddresses = lib.mkOption {
      type = listOf str;
      default = [ ];
      example = [ "203.0.113.7" "2001:db8::1" ];
      description = ''
        This host's public addresses. A relay to them would arrive on the
        loopback interface, which the firewall trusts, so they are refused
        as peers too, unless a media server (jitsi, jvb, bbb) shares the
        host: its UDP ports are then legitimate peers (TCP relays are off
        in any case). `lib.mkFleet` sets them.
      '';
    };

    healthPort = lib.mkOption {
      type = port;
      default = 8478;
      description = "Loopback port of the health check behind `/healthz/coturn` (a STUN request to coturn).";
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
        # Clients relay media over UDP; a TCP relay (RFC 6062) would let any
        # attendee open connections to whatever the peer rules allow.
        no-tcp-relay = true;
        cert = lib.mkIf cfg.tls "${credDir}/tls-cert";
        pkey = lib.mkIf cfg.tls "${credDir}/tls-key";
        extraConfig = ''
          no-multicast-peers
          fingerprint
        '' + lib.concatMapStrings (r: "denied-peer-ip=${r}\n")
          (cfg.deniedPeerRanges ++ lib.optionals (!mediaHere) cfg.ownAddresses);
      };

      systemd.services.coturn.serviceConfig = {
        LoadCredential =
          [ "turn-secret:${cfg.secretFile}" ]
          ++ lib.optionals cfg.tls [ "tls-cert:${certFiles.cert}" "tls-key:${certFiles.key}" ];
        # An empty file would pass LoadCredential= and become an empty secret.
        ExecStartPre = lib.mkBefore [ (venue.secrets.requireFilesCommand "coturn" secretFiles) ];
      };

      # Restarted when `venue deploy` writes the secret or the certificate
      # (coturn has no reload; credentials are copied at start).
      services.venue.secrets.consumers."coturn.service" = secretFiles;

      systemd.sockets.venue-healthz-coturn = {
        description = "Health check of coturn, for nginx";
        wantedBy = [ "sockets.target" ];
        listenStreams = [ "127.0.0.1:${toString cfg.healthPort}" ];
        socketConfig.Accept = true;
      };
      systemd.services."venue-healthz-coturn@" = {
        description = "Ask coturn for a STUN binding";
        serviceConfig = {
          ExecStart = healthCheck;
          StandardInput = "socket";
          StandardOutput = "socket";
          StandardError = "journal";
          DynamicUser = true;
          PrivateTmp = true;
          ProtectSystem = "strict";
          ProtectHome = true;
          NoNewPrivileges = true;
          RuntimeMaxSec = 10;
        };
      };

      networking.firewall = {
        allowedTCPPorts = [ venue.turn.port ] ++ lib.optional cfg.tls venue.turn.tlsPort;
        allowedUDPPorts = [ venue.turn.port ] ++ lib.optional cfg.tls venue.turn.tlsPort;
        allowedUDPPortRanges = [{ from = cfg.minPort; to = cfg.maxPort; }];
      };

      # nginx serves /healthz (what coturn answers) and, with TLS, the ACME challenge.
      services.venue.healthz.checks.coturn = "http://127.0.0.1:${toString cfg.healthPort}/";
    }

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
