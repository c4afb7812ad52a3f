# Options every venue role shares: the event's domain, where the agent puts
# secrets, TLS (the agent's one certificate, or per-host ACME), the venue's
# TURN server as seen by clients, and the health endpoint the deploy step
# checks (`GET http://<address>/healthz`).
#
# Every role module imports this file; the module system loads it once.
#
# Read against nixpkgs (nixos-26.05 line; the newest copies the project's
# search index holds):
# - nixos/modules/security/acme/default.nix @ c9634190fe4c: asserts
#   `defaults.email != null || every cert has one`; a cert's base unit
#   `chgrp`s `<webroot>/.well-known/acme-challenge` to the cert's group on
#   every start, so all certs sharing a webroot must share a group.
# - nixos/modules/services/web-servers/nginx/vhost-options.nix @ 9c5718477:
#   `sslCertificate`/`sslCertificateKey` are `types.path`; a string path is
#   used as is (not copied to the store).
# - nixos/modules/services/web-servers/nginx/default.nix @ 5bba330bed5d: the
#   whole unit (master included, and `nginx -t` in preStart) runs as
#   User=nginx, so it cannot read the agent's 0400 root files: a root unit
#   copies the certificate for it (group nginx, 0440) into /run; ExecReload
#   re-reads the files.
{ config, lib, ... }:

let
  cfg = config.services.venue;

  # nginx's copy of the agent's certificate (tmpfs: made anew at every boot).
  nginxTlsDir = "/run/venue-tls";
  nginxGroup = config.services.nginx.group;
  copyTls = ''
    install -d -m 0750 -o root -g ${nginxGroup} ${nginxTlsDir}
    # Both files, then both renames: nginx reads a matching pair.
    install -m 0440 -o root -g ${nginxGroup} ${lib.escapeShellArg cfg.tls.keyFile} ${nginxTlsDir}/key.pem.new
    install -m 0440 -o root -g ${nginxGroup} ${lib.escapeShellArg cfg.tls.certificateFile} ${nginxTlsDir}/fullchain.pem.new
    mv ${nginxTlsDir}/key.pem.new ${nginxTlsDir}/key.pem
    mv ${nginxTlsDir}/fullchain.pem.new ${nginxTlsDir}/fullchain.pem
  '';

  # Which role answers the plain /healthz when several share a host: the
  # portal first (the deploy step checks it there), then BigBlueButton.
  healthOrder = [ "portal" "bbb" "jitsi" "jvb" "coturn" "stream" "edge" ];
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
        description = ''
          Contact address for the ACME account. nixpkgs' security.acme refuses
          to evaluate without one whenever a host gets per-host certificates
          (that is, when {option}`services.venue.tls.certificateFile` is null).
          `lib.mkFleet` sets it from event.toml's `[tls] email`.
        '';
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

    tls = {
      fromAgent = lib.mkEnableOption ''
        the certificate `venue up` obtains for `<domain>` and `*.<domain>`
        and uploads with the secrets (`tls-fullchain.pem`, `tls-key.pem` in
        {option}`secretsDir`); lib.mkFleet turns it on'';

      certificateFile = lib.mkOption {
        type = nullOr str;
        default = if cfg.tls.fromAgent then "${cfg.secretsDir}/tls-fullchain.pem" else null;
        defaultText = lib.literalMD "the agent's `tls-fullchain.pem` with `fromAgent`, else null";
        example = "/var/lib/venue/secrets/tls-fullchain.pem";
        description = ''
          Certificate chain (PEM) for every name this host serves: the agent's
          one certificate for `<domain>` and `*.<domain>`, uploaded with the
          secrets (mode 0400, never in the store). Null: each nginx virtual
          host gets its own certificate from ACME (HTTP-01), as on a
          long-lived host deployed with `nixos-rebuild`.
        '';
      };

      keyFile = lib.mkOption {
        type = nullOr str;
        default = if cfg.tls.fromAgent then "${cfg.secretsDir}/tls-key.pem" else null;
        defaultText = lib.literalMD "the agent's `tls-key.pem` with `fromAgent`, else null";
        example = "/var/lib/venue/secrets/tls-key.pem";
        description = "Private key of {option}`certificateFile`.";
      };

      reloadServices = lib.mkOption {
        type = listOf str;
        default = [ ];
        internal = true;
        description = "Units restarted when the certificate file changes (nginx is reloaded).";
      };
    };

    # What a role module merges into each of its nginx virtual hosts.
    internal.vhostTls = lib.mkOption {
      type = attrs;
      internal = true;
      readOnly = true;
      default =
        if cfg.tls.certificateFile != null then {
          forceSSL = true;
          # Plain priority beats jitsi-meet's `enableACME = mkDefault true`.
          enableACME = false;
          # nginx's copies (see venue-tls below), not the root-only originals.
          sslCertificate = "${nginxTlsDir}/fullchain.pem";
          sslCertificateKey = "${nginxTlsDir}/key.pem";
        } else {
          forceSSL = true;
          enableACME = true;
        };
      description = "TLS settings for the roles' nginx virtual hosts.";
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

  config = lib.mkIf (cfg.healthz.checks != { }) (lib.mkMerge [{
    assertions = [{
      assertion = (cfg.tls.certificateFile == null) == (cfg.tls.keyFile == null);
      message = "services.venue.tls: set both certificateFile and keyFile, or neither.";
    }];

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
  }

    # `venue deploy` replaces the certificate in place (same path, so the
    # system does not change): reload nginx, which re-reads it without
    # dropping connections. Services that load it through systemd
    # credentials (coturn) add themselves to `services.venue.tls.reloadServices`.
    (lib.mkIf (cfg.tls.certificateFile != null) {
      systemd.services.venue-tls = {
        description = "Hand the venue's certificate to nginx";
        wantedBy = [ "multi-user.target" "nginx.service" ];
        before = [ "nginx.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          UMask = "0077";
        };
        script = copyTls;
      };
      systemd.paths.venue-tls-renewed = {
        wantedBy = [ "multi-user.target" ];
        # Either file: a reload with a mismatched pair fails `nginx -t` and
        # keeps the old one; the second file's change brings the new pair.
        pathConfig.PathChanged = [ cfg.tls.certificateFile cfg.tls.keyFile ];
      };
      # A copy and a reload: no restart of nginx (and nothing that Requires it).
      systemd.services.venue-tls-renewed = {
        description = "Hand a replaced certificate to the services that use it";
        serviceConfig = {
          Type = "oneshot";
          UMask = "0077";
        };
        script = copyTls + ''
          ${config.systemd.package}/bin/systemctl try-reload-or-restart nginx.service ${lib.escapeShellArgs cfg.tls.reloadServices}
        '';
      };
    })]);
}
