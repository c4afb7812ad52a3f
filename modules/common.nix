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
#
# Secrets arrive after boot (`venue deploy` on a server installed or booted
# from a snapshot without them). Every unit that reads one refuses to start
# without it (`secrets.requireFiles`) and names itself in
# `secrets.consumers`; a path unit on secretsDir restarts them when the
# agent's files land. Read against systemd's src/core/path.c (systemd/systemd
# @ 334415b16e19 and @ 018333725f9d): PathChanged= on a directory watches
# IN_CREATE|IN_MOVED_TO|IN_CLOSE_WRITE|IN_ATTRIB|IN_DELETE|IN_MOVED_FROM on
# the directory itself, so the agent's rename into place fires it (whereas
# DirectoryNotEmpty= fires again as long as anything is there); it never
# fires for what is already there when the path unit starts; MakeDirectory=
# creates the directory with DirectoryMode=.
{ config, lib, pkgs, ... }:

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
  healthOrder = [ "portal" "bbb" "jitsi" "jvb" "coturn" "stream" "edge" "chat" ];
  presentRoles = lib.filter (r: cfg.healthz.checks ? ${r}) healthOrder;
  probedRoles = lib.filter (r: cfg.healthz.checks.${r} != null) presentRoles;

  # Shell text: exit 1, naming the file, unless every one of `files` exists
  # and is non-empty, run as root (secretsDir is 0700 root)
  # and holds more than white space (a lone newline is an empty secret to
  # coturn's `head -n1` and the bridge's `$(cat …)`).
  requireFiles = files: lib.optionalString (files != [ ]) ''
    for f in ${lib.escapeShellArgs files}; do
      if [ ! -s "$f" ] || ! ${pkgs.gnugrep}/bin/grep -q '[^[:space:]]' "$f"; then
        echo "$f is missing or empty (the agent writes it at venue deploy): refusing to start" >&2
        exit 1
      fi
    done
  '';
  # The same as an ExecStartPre= line that runs as root ("+"), for units
  # that run as a service user.
  requireFilesCommand = name: files:
    "+${pkgs.writeShellScript "venue-require-${name}" (requireFiles files)}";

  systemctl = "${config.systemd.package}/bin/systemctl";
  # Unit name -> the files it reads.
  consumers = cfg.secrets.consumers;
  # (With only one of the two set, the assertion below says so.)
  tlsFromFiles = cfg.tls.certificateFile != null && cfg.tls.keyFile != null;
  # nginx reads the copy venue-tls makes: reloaded after it.
  reloadNginx = tlsFromFiles && config.services.nginx.enable;
  # The directories whose entries the agent replaces: secretsDir, and the
  # certificate's if it lives elsewhere.
  watchedDirs = lib.unique ([ cfg.secretsDir ]
    ++ lib.optionals tlsFromFiles [ (dirOf cfg.tls.certificateFile) (dirOf cfg.tls.keyFile) ]);

  # What each consumer started with: a digest of its own files (name and
  # content), recorded by the unit itself as it starts (boot, switch,
  # restart), so that a new certificate restarts only what reads it, and
  # secrets the agent sends again unchanged restart nothing.
  digestDir = "/run/venue-secrets";
  digestOf = files: ''
    for f in ${lib.escapeShellArgs files}; do
      printf '%s ' "$f"
      if [ -r "$f" ]; then sha256sum < "$f"; else echo missing; fi
    done | sha256sum | cut -d' ' -f1
  '';
  recordDigest = unit: files: "+${pkgs.writeShellScript "venue-secrets-record-${builtins.replaceStrings [ "@" ] [ "-" ] (lib.removeSuffix ".service" unit)}" ''
    PATH=${lib.makeBinPath [ pkgs.coreutils ]}
    umask 077
    mkdir -p ${digestDir}
    { ${digestOf files} } > ${digestDir}/${unit}.new
    mv ${digestDir}/${unit}.new ${digestDir}/${unit}
  ''}";

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

    };

    secrets = {
      consumers = lib.mkOption {
        type = attrsOf (listOf str);
        default = { };
        example = lib.literalExpression ''{ "coturn.service" = [ "/var/lib/venue/secrets/turn-secret" ]; }'';
        description = ''
          Units that read files from {option}`secretsDir` (or the agent's
          certificate), each with the files it reads. When the agent writes
          new files (`venue deploy`), a unit is restarted (also a failed one,
          which refused to start without its secrets) when one of its own
          files differs from what it started with, and started when it is not
          running; nginx is reloaded after the certificate's copy
          (`venue-tls.service`, itself a consumer) is made anew. Each unit
          records what it starts with (an `ExecStartPre=` added here).
        '';
      };

      requireFiles = lib.mkOption {
        type = functionTo str;
        internal = true;
        readOnly = true;
        default = requireFiles;
        description = ''
          `files: shell text` that exits 1 with a message naming the file
          unless every one of `files` exists and is non-empty, for a unit's
          root script or preStart (secretsDir is readable by root only).
        '';
      };

      requireFilesCommand = lib.mkOption {
        type = functionTo (functionTo str);
        internal = true;
        readOnly = true;
        default = requireFilesCommand;
        description = ''
          `name: files: "+/nix/store/…-venue-require-<name>"`: the same check
          as an `ExecStartPre=` entry that runs as root, for units with a
          service user.
        '';
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

  config = lib.mkMerge [
    (lib.mkIf (cfg.healthz.checks != { }) {
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
    })

    # The agent's certificate, copied for nginx (which cannot read the root
    # files) at boot and by the secrets' path unit below when `venue deploy`
    # replaces it: a consumer like any other, then a reload of nginx.
    (lib.mkIf (tlsFromFiles && config.services.nginx.enable) {
      systemd.services.venue-tls = {
        description = "Hand the venue's certificate to nginx";
        wantedBy = [ "multi-user.target" "nginx.service" ];
        before = [ "nginx.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          UMask = "0077";
        };
        script = requireFiles [ cfg.tls.certificateFile cfg.tls.keyFile ] + copyTls;
      };
      services.venue.secrets.consumers."venue-tls.service" = [ cfg.tls.certificateFile cfg.tls.keyFile ];
    })

    (lib.mkIf (consumers != { }) {
      assertions = [{
        assertion = lib.all (lib.hasSuffix ".service") (lib.attrNames consumers);
        message = "services.venue.secrets.consumers: only .service units record what they read (${lib.concatStringsSep ", " (lib.attrNames consumers)})";
      }];

      # The agent makes it too (mode 0700); here so that the path unit
      # watches the directory itself from the first boot on.
      systemd.tmpfiles.settings.venue-secrets.${cfg.secretsDir}.d = {
        mode = "0700";
        user = "root";
        group = "root";
      };

      systemd.services = lib.mapAttrs'
        (unit: files: lib.nameValuePair (lib.removeSuffix ".service" unit) {
          serviceConfig.ExecStartPre = lib.mkBefore [ (recordDigest unit files) ];
        })
        consumers
      // {
        venue-secrets-changed = {
          description = "Restart the services whose secrets changed";
          # A switch must not restart it half-way (it waits for switches).
          restartIfChanged = false;
          path = [ pkgs.coreutils pkgs.procps ];
          serviceConfig = {
            Type = "oneshot";
            UMask = "0077";
            # A consumer's start can hang; the next change needs this unit free.
            TimeoutStartSec = "30min";
          };
          script = ''
            # The agent writes several files in one go: let it finish.
            sleep 3
            # A unit restarted while a switch runs keeps the old
            # configuration (the switch only starts what is stopped): wait
            # for any switch before each pass. `venue deploy` also stops the
            # path unit around its own switch and runs this unit after it.
            # The units a switch starts record what they start with.
            wait_for_switch() {
              for _ in $(seq 300); do
                pgrep -f '/bin/switch-to-configuration' >/dev/null || return 0
                sleep 1
              done
            }
            # Files that change while this runs fire no new run (systemd
            # merges the trigger into this one): look again until nothing
            # differs, a few times at most. A unit restarted for a digest
            # is not restarted again for the same digest in this run (one
            # that fails before it records what it read would loop).
            rc=0
            restarted=()
            started=()
            declare -A acted=()
            for pass in 1 2 3 4 5; do
              wait_for_switch
              changed=()
              stopped=()
              ${lib.concatStrings (lib.mapAttrsToList (unit: files: ''
                now=$( ${digestOf files} )
                if [ "''${acted[${lib.escapeShellArg unit}]:-}" = "$now" ]; then
                  :
                elif [ "$(cat ${digestDir}/${unit} 2>/dev/null)" != "$now" ]; then
                  changed+=(${lib.escapeShellArg unit})
                  acted[${lib.escapeShellArg unit}]=$now
                elif ! ${systemctl} is-active -q ${lib.escapeShellArg unit}; then
                  stopped+=(${lib.escapeShellArg unit})
                fi
              '') consumers)}
              if [ ''${#changed[@]} -eq 0 ] && [ ''${#stopped[@]} -eq 0 ]; then
                break
              fi
              echo "pass $pass: secrets changed for: ''${changed[*]:-none}; not running: ''${stopped[*]:-none}"
              restarted+=("''${changed[@]}")
              started+=("''${stopped[@]}")
              # Units that refused to start (and hit their start limit) may
              # start again; nginx too, which fails without the certificate.
              ${systemctl} reset-failed "''${changed[@]}" "''${stopped[@]}" ${lib.optionalString reloadNginx "nginx.service"} || true
              # One unit that fails (a secret still missing) must not keep
              # the others, or nginx, from their turn.
              rc=0
              if [ ''${#changed[@]} -gt 0 ]; then
                ${systemctl} restart "''${changed[@]}" || rc=$?
              fi
              if [ ''${#stopped[@]} -gt 0 ]; then
                ${systemctl} start "''${stopped[@]}" || rc=$?
              fi
              ${lib.optionalString reloadNginx ''
                if [[ " ''${changed[*]} " == *" venue-tls.service "* ]]; then
                  ${systemctl} reload-or-restart nginx.service || rc=$?
                else
                  ${systemctl} start nginx.service || rc=$?
                fi
              ''}
            done
            # One line per run, for whoever reads the journal.
            if [ ''${#restarted[@]} -gt 0 ]; then
              echo "secrets changed: restarted $(printf '%s\n' "''${restarted[@]}" | sort -u | paste -sd' '); started ''${started[*]:-nothing}"
            else
              echo "secrets unchanged: started ''${started[*]:-nothing}"
            fi
            exit "$rc"
          '';
        };
      };

      systemd.paths.venue-secrets-changed = {
        description = "Watch for the secrets `venue deploy` writes";
        wantedBy = [ "multi-user.target" ];
        pathConfig = {
          # The agent writes each file beside its name and renames it into
          # place: an IN_MOVED_TO on the directory.
          PathChanged = watchedDirs;
          MakeDirectory = true;
          DirectoryMode = "0700";
        };
      };
    })
  ];
}
