# Options every venue role shares: the event's domain, where the agent puts
# secrets, ACME, the venue's TURN server as seen by clients, and the health
# endpoint the deploy step checks (`GET http://<address>/healthz`).
#
# Every role module imports this file; the module system loads it once.
{ config, lib, ... }:

let
  cfg = config.services.venue;

  # Which role answers the plain /healthz when several share a host: the
  # portal first (the deploy step checks it there), then BigBlueButton.
  healthOrder = [ "portal" "bbb" "jitsi" "jvb" "coturn" ];
  presentRoles = lib.filter (r: cfg.healthz.checks ? ${r}) healthOrder;
  probedRoles = lib.filter (r: cfg.healthz.checks.${r} != null) presentRoles;

  healthLocation = url:
    if url == null then {
      return = "200 'ok\\n'";
      extraConfig = ''
        default_type text/plain;
      '';
    } else {
      proxyPass = url;
      extraConfig = ''
        proxy_connect_timeout 5s;
        proxy_read_timeout 10s;
      '';
    };
in
{
  options.services.venue = with lib.types; {
    domain = lib.mkOption {
      type = str;
      example = "lpc.example.org";
      description = ''
        The event's DNS domain. A host's public name is `<name>.<domain>`.
      '';
    };

    secretsDir = lib.mkOption {
      type = str;
      default = "/var/lib/venue/secrets";
      description = ''
        Directory the agent uploads secrets to (files with mode 0400, owned by
        root). Only paths are put in the configuration: secrets never enter
        the Nix store.
      '';
    };

    acme = {
      email = lib.mkOption {
        type = nullOr str;
        default = null;
        example = "noc@lpc.example.org";
        description = "Contact address for the ACME account; null sends none.";
      };

      server = lib.mkOption {
        type = nullOr str;
        default = null;
        example = "https://acme-staging-v02.api.letsencrypt.org/directory";
        description = ''
          ACME directory URL; null keeps the nixpkgs default (Let's Encrypt).
          Until a certificate is issued, nixpkgs serves a self-signed one,
          which is what the VM tests rely on.
        '';
      };
    };

    turn = {
      host = lib.mkOption {
        type = nullOr str;
        default = null;
        example = "lpc-2020-coturn-1.lpc.example.org";
        description = ''
          Public name of the venue's coturn server, handed to Jitsi,
          BigBlueButton and the portal. Null: clients get no TURN server.
        '';
      };

      port = lib.mkOption {
        type = port;
        default = 3478;
        description = "TURN over UDP/TCP port.";
      };

      tlsPort = lib.mkOption {
        type = port;
        default = 5349;
        description = "TURN over TLS port.";
      };

      secretFile = lib.mkOption {
        type = str;
        default = "${cfg.secretsDir}/turn-secret";
        defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/turn-secret"'';
        description = "File holding coturn's static-auth-secret (TURN REST credentials).";
      };

      ttl = lib.mkOption {
        type = ints.positive;
        default = 86400;
        description = "Lifetime of the TURN credentials handed to clients, in seconds.";
      };
    };

    healthz.checks = lib.mkOption {
      type = attrsOf (nullOr str);
      default = { };
      example = { portal = "http://127.0.0.1:8087/healthz"; coturn = null; };
      description = ''
        Set by the role modules: for each role on this host, the local URL
        that `/healthz/<role>` proxies to, or null to have nginx answer 200
        itself. `/healthz` proxies to the first of portal, bbb, jitsi, jvb,
        coturn that has a URL here, and answers 200 itself when none has.
      '';
    };
  };

  config = lib.mkIf (cfg.healthz.checks != { }) {
    security.acme = {
      acceptTerms = true;
      defaults.email = lib.mkIf (cfg.acme.email != null) cfg.acme.email;
      defaults.server = lib.mkIf (cfg.acme.server != null) cfg.acme.server;
    };

    services.nginx = {
      enable = true;
      recommendedProxySettings = true;
      recommendedTlsSettings = true;
      # Requests by address (the deploy step's health check) match no
      # server_name and land here, in plain HTTP.
      virtualHosts."venue-health" = {
        default = true;
        serverName = "_";
        locations = {
          "= /healthz" = healthLocation (
            if probedRoles == [ ] then null else cfg.healthz.checks.${lib.head probedRoles}
          );
        } // lib.listToAttrs (map
          (role: lib.nameValuePair "= /healthz/${role}" (healthLocation cfg.healthz.checks.${role}))
          presentRoles);
      };
    };

    networking.firewall.allowedTCPPorts = [ 80 ];
  };
}
