# The event's chat: a Matrix homeserver (nixpkgs' Synapse on PostgreSQL) at
# `chat.<domain>` with Element web at its root. Ticket holders log in with
# their ticket through the portal (the one OpenID Connect provider): no
# registration, no passwords, no guests. Federation is off unless asked for.
#
# Secrets (the agent's files in secretsDir, root-only): a root oneshot copies
# the OIDC client secret and renders the others into a YAML file that Synapse
# reads through extraConfigFiles, both in /run/venue-chat (group
# matrix-synapse, 0440): never in the store. It refuses to start while one of
# them is missing or empty, Synapse requires it, and both are restarted when
# the agent's files arrive (services.venue.secrets.consumers).
#
# Read against nixpkgs (the newest stored copies):
# - nixos/modules/services/matrix/synapse.nix @ 02d79c9c8bcb (and @
#   232a73e7a58f): `settings` is freeform YAML with null values dropped;
#   `oidc_providers` present adds the "oidc" extra, psycopg2 the "postgres"
#   one; database.args default to database/user "matrix-synapse"; a local
#   database (no args.host) orders and requires the unit after
#   postgresql.target; the unit runs as matrix-synapse (fixed uid/gid) with
#   RuntimeDirectory=matrix-synapse, UMask 0077, ProtectSystem=strict,
#   PrivateUsers, withJemalloc (default on, LD_PRELOAD); preStart runs
#   `--generate-keys` with the store config alone; ExecStart passes
#   extraConfigFiles (`listOf path`) after it; the registration script
#   (`matrix-synapse-register_new_matrix_user`) passes them too. Its
#   assertions cover listeners only (one serves `client`); no assertion on
#   the database settings is in the copies read. Default listener: 8008 on
#   127.0.0.1 with client and federation, replaced here.
# - nixos/modules/services/databases/postgresql.nix (newest stored copy,
#   with postgresql-setup.service and postgresql.target; and @ 86cdf5f98105):
#   ensureUsers creates roles in postgresql-setup (`CREATE USER`), and
#   ensureDatabases is a plain `CREATE DATABASE` from template1 with the
#   cluster's locale. Synapse refuses a database whose collation or ctype is
#   not C, so the database is created here from template0 with C.
#   Local connections are `peer`: Synapse logs in as its own Unix user.
#   The superuser is the read-only "postgres" (peer, ident map postgres);
#   the port is settings.port; psql and pg_dump stay in the package's bin
#   (pkgs/servers/sql/postgresql/generic.nix @ a08c1df4786a: only ecpg
#   and pg_config move out; the socket is /run/postgresql).
# - pg_dump(1) and psql(1), PostgreSQL 15: --exclude-table-data takes
#   patterns, and one that matches nothing is no error (--strict-names
#   does not apply to it), hence the to_regclass check; psql -X skips
#   /etc/psqlrc. Synapse 1.163.2's schema (full_schemas/72 and its deltas,
#   storage/databases/main/{registration,client_ips,cache,openid}.py): the
#   login tokens are in access_tokens, refresh_tokens, user_ips,
#   login_tokens, open_id_tokens and, as cache keys,
#   cache_invalidation_stream_by_instance (dumps checked by hand).
# - pkgs/by-name/el/element-web/package.nix @ 17647f46c7d6: `conf` is merged
#   into the unwrapped config.json with jq's `*` (element-web-unwrapped
#   @ 95fdc59940dc: config.sample.json with disable_guests).
# - nixos/tests/matrix/synapse.nix @ 01f31c2ee7d0 (database with C collation).
# - pkgs/build-support/trivial-builders/default.nix (stored copy):
#   writeShellApplication writes bash with `set -o errexit/nounset/pipefail`
#   and PATH from runtimeInputs before the text, and checks it with `bash -n`
#   and ShellCheck (scripts/check-wrapped-scripts runs the same on
#   chat-export-rooms.sh); the program is `<out>/bin/<name>`.
# - nginx/default.nix (stored copies): a vhost's `listen`, when not empty,
#   replaces the default listen list; forceSSL redirects its non-ssl entries.
# - Synapse 1.163.2 (the portal's test virtualenv): config/key.py and
#   registration.py (inline secrets or *_path), oidc.py (client_secret_path
#   is read with only "\n" stripped: the copy here is trimmed as the portal
#   trims it; idp_id matches [A-Za-z0-9._~-]+ and is recorded as
#   `oidc-<idp_id>`, except the legacy "oidc"), handlers/auth.py
#   (sso.client_whitelist is a prefix match),
#   storage/engines/postgres.py (collation and ctype must be C),
#   app/homeserver.py (`/health` on every HTTP listener),
#   config/user_directory.py (`user_directory.enabled`, default true: with
#   only search_all_users false the search still finds everyone who shares
#   a public room), rest/admin/rooms.py (the room list by offset with
#   `next_batch`; a room's details, with its topic; a room's messages,
#   `dir=f` from the start without `from`, paged by `end`) and
#   rest/admin/register.py (shared-secret registration, mac as the export
#   script computes it): what chat-export-rooms.sh reads, checked against a
#   running Synapse 1.163.2 (two rooms, 1213 events, pages of 1000).
#
# The admin API (`/_synapse/admin/`) is served by nginx only to loopback and
# to `adminFrom` (the portal's addresses when it runs elsewhere: its bot
# registers, joins users and deactivates them through it); everyone else
# gets 403, and Synapse asks an admin's token besides.
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.chat;
  synapse = config.services.matrix-synapse;
  postgres = config.services.postgresql;

  runDir = "/run/venue-chat";
  dbName = "matrix-synapse";
  dbUser = "matrix-synapse";
  group = "matrix-synapse";
  archiveFile = "/var/lib/venue-chat/synapse.pgdump";
  roomsFile = "/var/lib/venue-chat/rooms.json";
  # The export's own admin account's token (root, 0600).
  archiveTokenFile = "/var/lib/venue-chat/archive-admin-token";

  secretFiles = [ cfg.oidc.clientSecretFile cfg.macaroonSecretFile cfg.formSecretFile cfg.registrationSecretFile ];

  baseUrl = "https://${cfg.hostName}";

  element = pkgs.element-web.override {
    conf = lib.recursiveUpdate
      {
        default_server_config."m.homeserver" = {
          base_url = baseUrl;
          server_name = cfg.serverName;
        };
        # This homeserver only, through the portal only.
        disable_custom_urls = true;
        disable_guests = true;
        disable_3pid_login = true;
        sso_redirect_options.immediate = true;
        setting_defaults = {
          "UIFeature.registration" = false;
          "UIFeature.passwordReset" = false;
        };
        room_directory.servers = [ cfg.serverName ];
        default_federate = cfg.federation.enable;
        # The sample config's outside services, which would see who uses
        # the event's chat: vector.im's identity server and integrations,
        # element.io's bug reports and calls, maptiler's maps. Meetings are
        # the portal's Join; Element's own calls and widgets are off.
        default_server_config."m.identity_server" = null;
        integrations_ui_url = null;
        integrations_rest_url = null;
        integrations_widgets_urls = [ ];
        bug_report_endpoint_url = null;
        uisi_autorageshake_app = null;
        jitsi = null;
        element_call = null;
        map_style_url = null;
        enable_presence_by_hs_url = null;
        setting_defaults."UIFeature.voip" = false;
        setting_defaults."UIFeature.widgets" = false;
        setting_defaults."UIFeature.identityServer" = false;
        setting_defaults."UIFeature.feedback" = false;
      }
      cfg.element.extraConfig;
  };

  # The agent's files as Synapse reads them: whitespace around a value
  # trimmed (the portal trims the client secret the same way), read from
  # stdin or with --rawfile so that no value is on a command line.
  renderSecrets = ''
    trim='gsub("^\\s+|\\s+$"; "")'
    for f in ${lib.escapeShellArgs secretFiles}; do
      if [ -z "$(jq -jRs "$trim" < "$f")" ]; then
        echo "$f holds only whitespace: refusing to start" >&2
        exit 1
      fi
    done
    chgrp ${group} ${runDir}
    jq -jRs "$trim" < ${lib.escapeShellArg cfg.oidc.clientSecretFile} > ${runDir}/oidc-client-secret.new
    jq -n \
      --rawfile macaroon ${lib.escapeShellArg cfg.macaroonSecretFile} \
      --rawfile form ${lib.escapeShellArg cfg.formSecretFile} \
      --rawfile registration ${lib.escapeShellArg cfg.registrationSecretFile} \
      "{macaroon_secret_key: (\$macaroon | $trim), form_secret: (\$form | $trim),
        registration_shared_secret: (\$registration | $trim)}" > ${runDir}/secrets.yaml.new
    for f in oidc-client-secret secrets.yaml; do
      chgrp ${group} ${runDir}/$f.new
      chmod 0440 ${runDir}/$f.new
      mv ${runDir}/$f.new ${runDir}/$f
    done
  '';

  # Created here rather than by ensureDatabases: Synapse needs C collation.
  createDatabase = ''
    if ! psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${dbName}'" | grep -q 1; then
      psql -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"${dbName}\" OWNER \"${dbUser}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    fi
  '';

  # The tables whose data would log someone in: besides access_tokens and
  # refresh_tokens, Synapse keeps each session's token in user_ips (last
  # seen), the short-lived SSO and OpenID tokens in their tables, and tokens
  # as cache keys in the invalidation stream (schema of Synapse 1.163.2). The
  # testbed's chat-dump (hosts/testbed/services/default.nix) has this list.
  tokenTables = [
    "public.access_tokens"
    "public.refresh_tokens"
    "public.user_ips"
    "public.login_tokens"
    "public.open_id_tokens"
    "public.cache_invalidation_stream_by_instance"
  ];

  # archive.nix: run as root by `venue archive`; pg_dump as the database's
  # superuser over the local socket, a consistent snapshot of a live database,
  # without the login tokens (the portal bot's and the export's are admins').
  # pg_dump ignores an exclusion that matches no table, so a token table that
  # a newer Synapse renamed or dropped would leak silently: the dump refuses
  # instead. (A token table a newer Synapse adds is not caught here: the VM
  # test looks for a live token in the whole dump.)
  dumpDatabase = pkgs.writeShellScript "venue-chat-dump" ''
    set -euo pipefail
    umask 077
    cd /  # runuser keeps the caller's directory, which postgres may not read
    ${pkgs.coreutils}/bin/install -d -m 0700 ${dirOf archiveFile}
    missing=$(${pkgs.util-linux}/bin/runuser -u postgres -- \
      ${postgres.package}/bin/psql --no-psqlrc --port=${toString postgres.settings.port} --dbname=${dbName} -v ON_ERROR_STOP=1 -Atc \
      "SELECT string_agg(t, ' ') FROM unnest(ARRAY[${lib.concatMapStringsSep "," (t: "'${t}'") tokenTables}]) AS t WHERE to_regclass(t) IS NULL")
    if [ -n "$missing" ]; then
      echo "venue-chat-dump: no table $missing in ${dbName}: Synapse keeps its tokens elsewhere now; not dumping" >&2
      exit 1
    fi
    ${pkgs.util-linux}/bin/runuser -u postgres -- \
      ${postgres.package}/bin/pg_dump --port=${toString postgres.settings.port} --format=custom --dbname=${dbName} \
      ${lib.concatMapStringsSep " " (t: "--exclude-table-data=${t}") tokenTables} \
      > ${archiveFile}.new
    ${pkgs.coreutils}/bin/mv ${archiveFile}.new ${archiveFile}
  '';

  # archive.nix: every room's history as JSON, through the admin API on
  # loopback (chat-export-rooms.sh says how; no secret on a command line).
  exportRooms = pkgs.writeShellApplication {
    name = "venue-chat-export-rooms";
    runtimeInputs = [ pkgs.coreutils pkgs.curl pkgs.jq ];
    text = builtins.readFile ./chat-export-rooms.sh;
  };

  allowOnly = addresses: lib.concatMapStrings (a: "allow ${a};\n") addresses + "deny all;\n";
  adminFrom = [ "127.0.0.1" "::1" ] ++ cfg.adminFrom;

  # Federation: Synapse's federation resource, and nginx on 8448 besides 443.
  listenWithFederation = lib.concatMap
    (addr: [
      { inherit addr; port = 80; ssl = false; }
      { inherit addr; port = 443; ssl = true; }
      { inherit addr; port = 8448; ssl = true; }
    ])
    config.services.nginx.defaultListenAddresses;

  proxy = {
    proxyPass = "http://127.0.0.1:${toString cfg.port}";
    extraConfig = ''
      client_max_body_size ${synapse.settings.max_upload_size};
    '';
  };
in
{
  imports = [ ./common.nix ./archive.nix ];

  options.services.venue.chat = with lib.types; {
    enable = lib.mkEnableOption "the event's chat (Synapse and Element, login through the portal)";

    hostName = lib.mkOption {
      type = str;
      default = "chat.${venue.domain}";
      defaultText = lib.literalExpression ''"chat.''${config.services.venue.domain}"'';
      description = "Public name of the homeserver and of Element (public_baseurl is `https://<hostName>/`).";
    };

    serverAliases = lib.mkOption {
      type = listOf str;
      default = [ ];
      example = [ "lpc-2020-chat-1.lpc.example.org" ];
      description = "Other names the chat answers to (the host's own name).";
    };

    serverName = lib.mkOption {
      type = str;
      default = venue.domain;
      defaultText = lib.literalExpression "config.services.venue.domain";
      description = ''
        Synapse's server_name, the part after `:` in user IDs. It cannot be
        changed once the database exists. The portal's host delegates it to
        {option}`hostName` (`/.well-known/matrix/*`).
      '';
    };

    port = lib.mkOption {
      type = port;
      default = 8008;
      description = "Synapse's HTTP listener on 127.0.0.1; nginx proxies to it.";
    };

    adminFrom = lib.mkOption {
      type = listOf str;
      default = [ ];
      example = [ "203.0.113.2" "2001:db8::2" ];
      description = ''
        Addresses that may reach Synapse's admin API (`/_synapse/admin/`)
        through nginx: the portal's, when it runs on another host (its bot
        manages rooms and users with it). Loopback always may; everyone else
        gets 403.
      '';
    };

    federation.enable = lib.mkEnableOption ''
      federation with other homeservers: Synapse's federation resource,
      nginx on 8448 too, and matrix.org as trusted key server. Off: no
      federation listener, no server allowed (an empty
      federation_domain_whitelist) and no key servers'';

    oidc = {
      issuer = lib.mkOption {
        type = str;
        default = "https://${venue.domain}";
        defaultText = lib.literalExpression ''"https://''${config.services.venue.domain}"'';
        description = "The portal's issuer (its public URL): Synapse reads its discovery document.";
      };

      clientId = lib.mkOption {
        type = str;
        default = "synapse";
        description = "The client registered in the portal's `[oidc]`.";
      };

      clientSecretFile = lib.mkOption {
        type = str;
        default = "${venue.secretsDir}/oidc-client-secret";
        defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/oidc-client-secret"'';
        description = "The client secret shared with the portal (at least 16 characters).";
      };

      idpId = lib.mkOption {
        type = strMatching "[A-Za-z0-9._~-]+";
        default = "venue";
        description = ''
          Synapse's idp_id of the portal. Synapse records the portal's
          subjects under `oidc-<idpId>`, which the portal's `[chat]
          auth_provider` names.
        '';
      };

      idpName = lib.mkOption {
        type = str;
        default = "Event ticket";
        description = "What Element calls the login.";
      };
    };

    macaroonSecretFile = lib.mkOption {
      type = str;
      default = "${venue.secretsDir}/synapse-macaroon-secret";
      defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/synapse-macaroon-secret"'';
      description = "Synapse's macaroon_secret_key (signs login tokens).";
    };

    formSecretFile = lib.mkOption {
      type = str;
      default = "${venue.secretsDir}/synapse-form-secret";
      defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/synapse-form-secret"'';
      description = "Synapse's form_secret (HMACs of its HTML forms).";
    };

    registrationSecretFile = lib.mkOption {
      type = str;
      default = "${venue.secretsDir}/synapse-registration-secret";
      defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/synapse-registration-secret"'';
      description = ''
        Synapse's registration_shared_secret: the admin API's
        `/_synapse/admin/v1/register` makes accounts (an admin that creates
        the rooms) with it, although registration is otherwise off.
      '';
    };

    element.extraConfig = lib.mkOption {
      type = attrs;
      default = { };
      example = { brand = "LPC 2020 chat"; };
      description = "Merged (recursively, last) into Element's config.json.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.matrix-synapse = {
      enable = true;
      settings = {
        server_name = cfg.serverName;
        public_baseurl = "${baseUrl}/";
        listeners = [{
          port = cfg.port;
          bind_addresses = [ "127.0.0.1" ];
          type = "http";
          tls = false;
          x_forwarded = true;
          resources = [{
            names = [ "client" ] ++ lib.optional cfg.federation.enable "federation";
            compress = false;
          }];
        }];
        database = {
          name = "psycopg2";
          args = {
            database = dbName;
            user = dbUser;
          };
        };
        # A session's room fills when its talk starts: Synapse's default
        # (1 join a second per room after a burst of 10,
        # synapse/config/ratelimiting.py in 1.163.2) would keep the 100th
        # attendee of a room waiting about 90 s.
        rc_joins_per_room = {
          per_second = 50;
          burst_count = 500;
        };
        enable_registration = false;
        password_config.enabled = false;
        allow_guest_access = false;
        report_stats = false;
        # The portal has its own opt-in directory of attendees; Synapse's
        # search would list everyone who shares a public room with the asker.
        user_directory.enabled = false;
        # null is dropped from the file: every server is then allowed.
        federation_domain_whitelist = if cfg.federation.enable then null else [ ];
        # Element, and nothing else, gets the login token without a
        # "continue to" page.
        sso.client_whitelist = [ "${baseUrl}/" ];
        oidc_providers = [{
          idp_id = cfg.oidc.idpId;
          idp_name = cfg.oidc.idpName;
          inherit (cfg.oidc) issuer;
          client_id = cfg.oidc.clientId;
          client_secret_path = "${runDir}/oidc-client-secret";
          client_auth_method = "client_secret_basic";
          scopes = [ "openid" "profile" ];
          pkce_method = "always";
          user_mapping_provider.config = {
            localpart_template = "{{ user.preferred_username }}";
            display_name_template = "{{ user.name }}";
          };
        }];
      } // lib.optionalAttrs (!cfg.federation.enable) {
        trusted_key_servers = [ ];
      };
      extraConfigFiles = [ "${runDir}/secrets.yaml" ];
    };

    systemd.services.venue-chat-secrets = {
      description = "Hand the chat's secrets to Synapse";
      wantedBy = [ "multi-user.target" ];
      before = [ "matrix-synapse.service" ];
      path = [ pkgs.jq ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        UMask = "0077";
        # Lives while this unit is active; made anew at each start.
        RuntimeDirectory = "venue-chat";
        RuntimeDirectoryMode = "0750";
      };
      script = venue.secrets.requireFiles secretFiles + renderSecrets;
    };

    services.postgresql = {
      enable = true;
      ensureUsers = [{ name = dbUser; }];
    };

    systemd.services.venue-chat-database = {
      description = "Create Synapse's database (C collation)";
      wantedBy = [ "multi-user.target" ];
      requires = [ "postgresql.target" ];
      after = [ "postgresql.target" ];
      before = [ "matrix-synapse.service" ];
      path = [ postgres.package ];
      environment.PGPORT = toString postgres.settings.port;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = "postgres";
        Group = "postgres";
      };
      script = createDatabase;
    };

    systemd.services.matrix-synapse = {
      requires = [ "venue-chat-secrets.service" "venue-chat-database.service" ];
      after = [ "venue-chat-secrets.service" "venue-chat-database.service" ];
    };

    services.venue.secrets.consumers = lib.genAttrs [ "venue-chat-secrets.service" "matrix-synapse.service" ] (_: secretFiles);

    services.nginx.virtualHosts.${cfg.hostName} = venue.internal.vhostTls // {
      inherit (cfg) serverAliases;
      root = element;
      locations = {
        "/".extraConfig = ''
          add_header X-Frame-Options SAMEORIGIN;
          add_header X-Content-Type-Options nosniff;
          add_header Content-Security-Policy "frame-ancestors 'self'";
        '';
        "/_matrix" = proxy;
        "/_synapse/client" = proxy;
        "/_synapse/admin" = proxy // {
          extraConfig = proxy.extraConfig + allowOnly adminFrom;
        };
      };
    } // lib.optionalAttrs cfg.federation.enable {
      listen = listenWithFederation;
    };

    networking.firewall.allowedTCPPorts = [ 80 443 ] ++ lib.optional cfg.federation.enable 8448;

    services.venue.healthz.checks.chat = "http://127.0.0.1:${toString cfg.port}/health";

    # What outlives the event (archive.nix): Synapse's database, and every
    # room's history as JSON that needs no Synapse to read.
    services.venue.archive.items = {
      "synapse.pgdump" = {
        path = archiveFile;
        dump = "${dumpDatabase}";
      };
      "rooms.json" = {
        path = roomsFile;
        dump = lib.escapeShellArgs [
          "${exportRooms}/bin/venue-chat-export-rooms"
          "http://127.0.0.1:${toString cfg.port}"
          cfg.registrationSecretFile
          archiveTokenFile
          roomsFile
        ];
      };
    };
  };
}
