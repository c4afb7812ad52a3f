# The real services of a testbed host, started by its switch-to-configuration
# inside the host's namespaces (so they die with the host), with the secrets
# venue deployed to /var/lib/venue/secrets. Debian's programs come from the
# machine (/usr), not the store: this Nix has no nixpkgs.
#
#   every role: nginx (Debian) on :80 (/healthz, what deploy checks) and, once
#               the certificate is deployed, TLS on :443 with it
#   coturn:     turnserver (Debian's coturn), use-auth-secret with the TURN
#               secret, UDP/TCP 3478 and TLS 5349
#   portal:     the real venue-portal behind nginx (when VENUE_TESTBED_PORTAL)
#   bbb:        fake-bbb (the BBB API, checksums as BBB checks them) behind
#               nginx at /bigbluebutton/api (when VENUE_TESTBED_BBB)
#   jitsi:      prosody (Debian) with BOSH and websocket behind nginx; login
#               only with a venue-signed token (mod_auth_venue_token.lua)
#   chat:       Synapse (scripts/install-deps' virtualenv) on PostgreSQL
#               (Debian) behind nginx at chat.<domain>, the portal its OpenID
#               Connect provider (when `chat` is given: systems.nix)
#
# Configuration holding a secret is written at activation below
# /var/lib/venue/run (mode 0700), never into the store; everything else is
# here. Pid files there let a re-activation stop what the previous one started.
#
# As the real modules (modules/common.nix, secrets.requireFiles): the
# services refuse to start while a secret they read (`requiredSecrets`, and
# the agent's certificate when the fleet gets one from venue) is missing,
# empty or only white space, and then nothing answers /healthz. That is what
# a host booted before `venue deploy` (a snapshot, an install without its
# secrets) shows; the deploy's switch starts them once the files are there.
#
# `chat`: null, or { venv; roots; exportRooms; } when the fleet has a chat
# host and the portal runs: Synapse's virtualenv (a path on the machine, as
# Debian's programs are), the roots it trusts for the portal's https issuer
# (a store file), and modules/chat-export-rooms.sh (the archive's rooms.json).
{ mk, fleet, server, healthz, requiredSecrets ? [ ], portalPackage ? null, bbbPackage ? null, eventFile, chat ? null }:
let
  domain = fleet.domain or "testbed.example.org";
  fqdn = "${server.name}.${domain}";
  run = "/var/lib/venue/run";
  secrets = "/var/lib/venue/secrets";
  role = server.role;
  required = map (n: "${secrets}/${n}") requiredSecrets
    ++ (if fleet.tls or false then [ "${secrets}/tls-fullchain.pem" "${secrets}/tls-key.pem" ] else [ ]);
  ipv4 = server.ipv4 or null;
  others = r: builtins.filter (s: s.role == r && !(s.static or false)) fleet.servers;
  first = r:
    let found = builtins.filter (s: s.ipv4 or null != null) (others r); in
    if found == [ ] then null else builtins.head found;

  # The chat: Synapse at chat.<domain>, its server name the event's domain
  # (modules/chat.nix's defaults), the portal its OpenID Connect provider.
  chatName = "chat.${domain}";
  chatState = "/var/lib/venue/chat";
  chatHost = first "chat";
  portalHost = first "portal";
  withChat = chat != null && chatHost != null && portalHost != null;
  synapsePort = 8008;

  # BBB's supportedChecksumAlgorithms (BBB >= 2.6 lets the operator choose):
  # SHA-1 off, so the tests see a disabled algorithm refused.
  bbbChecksums = "sha256,sha384,sha512";

  # nginx: its pid, logs and temporary files are the host's own.
  nginxMain = health: locations: ''
    daemon off;
    user root;
    worker_processes 1;
    pid ${run}/nginx/nginx.pid;
    error_log ${run}/nginx/error.log;
    events { worker_connections 512; }
    http {
      include /etc/nginx/mime.types;
      default_type text/plain;
      access_log ${run}/nginx/access.log;
      client_body_temp_path ${run}/nginx/body;
      proxy_temp_path ${run}/nginx/proxy;
      server {
        listen 80 default_server;
        location = /healthz { ${health} }
    ${locations}
        location / { root @www@; }
      }
  '';
  # The certificate's path through a variable: nginx then reads it at each
  # handshake, so one that `venue deploy` renews (without a switch) is served
  # from the next connection on, with no reload to race against.
  nginxTls = locations: ''
      map $ssl_server_name $venue_tls_chain { default ${secrets}/tls-fullchain.pem; }
      map $ssl_server_name $venue_tls_key { default ${secrets}/tls-key.pem; }
      server {
        listen 443 ssl default_server;
        ssl_certificate $venue_tls_chain;
        ssl_certificate_key $venue_tls_key;
    ${locations}
      }
  '';
  proxy = port: ''
    proxy_pass http://127.0.0.1:${toString port};
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Forwarded-Proto $scheme;
  '';
  # The chat's /healthz asks Synapse (modules/chat.nix's healthz check), as
  # does /healthz/chat; a broken host's stays the missing static file.
  staticHealth = "root @www@;";
  synapseHealth = "proxy_pass http://127.0.0.1:${toString synapsePort}/health;";
  chatHealth = if withChat && healthz.file == "healthz" then synapseHealth else staticHealth;
  wellKnown = body: ''
    default_type application/json;
    add_header Access-Control-Allow-Origin * always;
    return 200 '${builtins.toJSON body}';
  '';

  bbbLocations = if bbbPackage == null then "" else ''
    location /bigbluebutton/ { ${proxy 8090} }
    location /html5client/ { ${proxy 8090} }
  '';

  # Per role: locations on :80, on :443, the start commands, and files.
  roles = {
    coturn = {
      http = "";
      https = "location / { root @www@; }";
    };
    portal = {
      http = "";
      # The portal answers everything, /healthz included; with a chat, nginx
      # delegates the Matrix server name to it (modules/portal.nix's matrixHost).
      https = (if withChat then ''
        location = /.well-known/matrix/server { ${wellKnown { "m.server" = "${chatName}:443"; }} }
        location = /.well-known/matrix/client { ${wellKnown { "m.homeserver".base_url = "https://${chatName}"; }} }
      '' else "")
      + (if portalPackage == null then "location / { root @www@; }" else "location / { ${proxy 8087} }");
    };
    chat = if !withChat then { http = ""; https = "location / { root @www@; }"; } else {
      # The portal reaches the client and admin APIs over :80 (see
      # docs/testbed.md), as it reaches BBB.
      http = ''
        location = /healthz/chat { ${chatHealth} }
        location /_matrix/ { ${proxy synapsePort} }
        location /_synapse/ { ${proxy synapsePort} }
      '';
      # As modules/chat.nix: the client API and Synapse's SSO pages; `/` is
      # Element's place (a placeholder here).
      https = ''
        location /_matrix/ { ${proxy synapsePort} }
        location /_synapse/client/ { ${proxy synapsePort} }
        location / { root @www@; }
      '';
    };
    bbb = {
      # The portal reaches BBB over :80 (see docs/testbed.md).
      http = bbbLocations;
      https = bbbLocations + "location / { root @www@; }";
    };
    jitsi = {
      http = "";
      https = ''
        location = /http-bind { ${proxy 5280} }
        location = /xmpp-websocket {
          ${proxy 5280}
          proxy_http_version 1.1;
          proxy_set_header Upgrade $http_upgrade;
          proxy_set_header Connection "upgrade";
          proxy_read_timeout 900s;
        }
        # Every room is the one page, as jitsi-meet's nginx config has it.
        location / { root @www@; try_files $uri /index.html; }
      '';
    };
  };
  r = roles.${role} or { http = ""; https = "location / { root @www@; }"; };

  turnTemplate = ''
    listening-port=3478
    tls-listening-port=5349
    ${if ipv4 != null then "listening-ip=${ipv4}\nrelay-ip=${ipv4}" else ""}
    min-port=49152
    max-port=49407
    use-auth-secret
    realm=${domain}
    fingerprint
    no-cli
    no-dtls
    no-multicast-peers
    userdb=${run}/coturn/turndb
    pidfile=${run}/coturn/turnserver.pid
    log-file=${run}/coturn/turn.log
    simple-log
    no-stdout-log
  '';

  prosodyConfig = ''
    -- Jitsi's prosody, minus Jitsi: BOSH and websocket for ${fqdn}, login
    -- only with a venue-signed token, no guests.
    run_as_root = true -- the test host runs everything as root
    daemonize = false
    pidfile = "${run}/prosody/prosody.pid"
    data_path = "${run}/prosody/data"
    certificates = "${run}/prosody/certs"
    plugin_paths = { "@here@/prosody-plugins" }
    interfaces = { "127.0.0.1" }
    c2s_ports = { 5222 }
    s2s_ports = { }
    http_ports = { 5280 }
    http_interfaces = { "127.0.0.1" }
    https_ports = { }
    -- nginx terminates TLS in front of BOSH and the websocket.
    consider_bosh_secure = true
    consider_websocket_secure = true
    c2s_require_encryption = false
    log = { info = "${run}/prosody/prosody.log" }
    modules_enabled = { "bosh", "websocket", "saslauth", "roster", "disco", "ping" }
    modules_disabled = { "s2s", "tls", "register", "posix" }
    storage = "internal"

    VirtualHost "${fqdn}"
      authentication = "venue_token"
      venue_token_secret_file = "${secrets}/jwt-secret"
      venue_token_app_id = "venue"

    -- Where Jitsi lets anonymous guests in: venue lets nobody in.
    VirtualHost "guest.${fqdn}"
      authentication = "venue_token"
      venue_token_refuse = "guest access is disabled on this venue"
  '';

  # Synapse as modules/chat.nix configures it, on the toy's PostgreSQL
  # (the module's database, role and C collation), with the agent's secrets
  # rendered at activation into ${run}/chat (mode 0600): JSON is YAML.
  # Beyond the module: rc_login raised (every login of a rehearsal comes
  # from the machine's one address), and the issuer's roots and address
  # given to it (bin/start): a real host has public roots and DNS.
  synapseConfig = builtins.toJSON {
    server_name = domain;
    public_baseurl = "https://${chatName}/";
    listeners = [{
      port = synapsePort;
      bind_addresses = [ "127.0.0.1" ];
      type = "http";
      tls = false;
      x_forwarded = true;
      resources = [{ names = [ "client" ]; compress = false; }];
    }];
    database = {
      name = "psycopg2";
      args = {
        database = "matrix-synapse";
        user = "matrix-synapse";
        host = "${chatState}/pgsock";
        cp_min = 1;
        cp_max = 5;
      };
    };
    log_config = "@here@/etc/synapse-log.yaml";
    media_store_path = "${chatState}/media";
    signing_key_path = "${chatState}/signing.key";
    enable_registration = false;
    password_config.enabled = false;
    allow_guest_access = false;
    report_stats = false;
    federation_domain_whitelist = [ ];
    trusted_key_servers = [ ];
    suppress_key_server_warning = true;
    user_directory.enabled = false;
    sso.client_whitelist = [ "https://${chatName}/" ];
    rc_login = {
      address = { per_second = 50; burst_count = 100; };
      account = { per_second = 50; burst_count = 100; };
      failed_attempts = { per_second = 50; burst_count = 100; };
    };
    oidc_providers = [{
      idp_id = "venue";
      idp_name = "Event ticket";
      issuer = "https://${domain}";
      client_id = "synapse";
      client_secret_path = "${run}/chat/oidc-client-secret";
      client_auth_method = "client_secret_basic";
      scopes = [ "openid" "profile" ];
      pkce_method = "always";
      user_mapping_provider.config = {
        localpart_template = "{{ user.preferred_username }}";
        display_name_template = "{{ user.name }}";
      };
    }];
  };
  synapseLog = builtins.toJSON {
    version = 1;
    formatters.plain.format = "%(asctime)s %(name)s %(levelname)s %(message)s";
    handlers.console = { class = "logging.StreamHandler"; formatter = "plain"; };
    root = { level = "INFO"; handlers = [ "console" ]; };
    disable_existing_loggers = false;
  };
  # Synapse resolves the issuer's name through this file (its own mount
  # namespace): the test hosts have no resolver for the fake's zone.
  chatHosts = ''
    127.0.0.1 localhost
    ::1 localhost
    ${if withChat then "${portalHost.ipv4} ${domain}" else ""}
  '';

  hostOf = s: "${s.name}.${domain}";
  portalConfig = ''
    session_secret_file = "${secrets}/portal-session"
    public_url = "https://${domain}"
    poll_interval_seconds = 5
    # The BigBlueButton pool `venue autopilot` writes, and its API (Bearer:
    # the capture-secret, as modules/portal.nix sets it).
    pool_file = "/var/lib/venue/pool.json"
    pool_api_secret_file = "${secrets}/capture-secret"
  '' + builtins.concatStringsSep "" (map
    (s: ''

      [[bbb]]
      name = "${s.name}"
      url = "http://${s.ipv4}/bigbluebutton/api"
      secret_file = "${secrets}/bbb-secret"
      checksum = "sha256"
    '')
    (builtins.filter (s: s.ipv4 or null != null) (others "bbb")))
  + builtins.concatStringsSep "" (map
    (s: ''

      [jitsi]
      domain = "${hostOf s}"
      app_id = "venue"
      secret_file = "${secrets}/jwt-secret"
    '')
    (let j = others "jitsi"; in if j == [ ] then [ ] else [ (builtins.head j) ]))
  + builtins.concatStringsSep "" (map
    (s: ''

      [turn]
      uris = ["turn:${hostOf s}:3478?transport=udp", "turns:${hostOf s}:5349?transport=tcp"]
      secret_file = "${secrets}/turn-secret"
      ttl_seconds = 3600
    '')
    (let t = others "coturn"; in if t == [ ] then [ ] else [ (builtins.head t) ]))
  # The chat's login (the portal is its OpenID Connect provider) and rooms.
  + (if !withChat then "" else ''

    [oidc]
    client_id = "synapse"
    client_secret_file = "${secrets}/oidc-client-secret"
    redirect_uri = "https://${chatName}/_synapse/client/oidc/callback"

    [chat]
    homeserver_url = "http://${chatHost.ipv4}"
    server_name = "${domain}"
    registration_shared_secret_file = "${secrets}/synapse-registration-secret"
    sync_interval_seconds = 2
  '');

  # What the role runs, after nginx's config is in place (shell, in `start`).
  startRole = {
    coturn = ''
      mkdir -p ${run}/coturn
      write_private ${run}/coturn/turnserver.conf coturn_config
      stop coturn
      start coturn /usr/bin/turnserver -c ${run}/coturn/turnserver.conf
      wait_tcp coturn ${if ipv4 != null then ipv4 else "127.0.0.1"} 3478
    '';
    portal = if portalPackage == null then "" else ''
      stop portal
      start portal ${portalPackage}/bin/venue-portal serve --event ${eventFile} --listen 127.0.0.1:8087 --state /var/lib/venue/portal --config $here/etc/portal.toml
      wait_tcp portal 127.0.0.1 8087
    '';
    bbb = if bbbPackage == null then "" else ''
      stop bbb
      start bbb ${bbbPackage}/bin/fake-bbb --listen 127.0.0.1:8090 --secret-file ${secrets}/bbb-secret --checksums ${bbbChecksums}
      wait_tcp bbb 127.0.0.1 8090
    '';
    chat = if !withChat then "" else ''
      stop synapse
      stop postgres INT
      pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
      if [ ! -x "$pg_bin/initdb" ] || ! id postgres >/dev/null 2>&1; then
        echo "the chat needs Debian's PostgreSQL server and its postgres user (scripts/install-deps)" >&2
        exit 1
      fi
      mkdir -p ${chatState} ${run}/chat
      chmod 0755 ${chatState}
      # A cluster of its own, first activation only; reached through a
      # socket only its owner and root can open (no TCP).
      if [ ! -f ${chatState}/pg/PG_VERSION ]; then
        rm -rf ${chatState}/pg.new
        mkdir -p ${chatState}/pg.new
        chown postgres: ${chatState}/pg.new
        chmod 0700 ${chatState}/pg.new
        setpriv --reuid=postgres --regid=postgres --init-groups $pg_bin/initdb --pgdata=${chatState}/pg.new \
          --username=postgres --encoding=UTF8 --locale=C --auth-local=trust --auth-host=reject >>$run/postgres.log 2>&1
        mv ${chatState}/pg.new ${chatState}/pg
      fi
      mkdir -p ${chatState}/pgsock
      chown postgres: ${chatState}/pgsock
      chmod 0700 ${chatState}/pgsock
      start postgres setpriv --reuid=postgres --regid=postgres --init-groups $pg_bin/postgres -D ${chatState}/pg \
        -c listen_addresses= -c unix_socket_directories=${chatState}/pgsock -c unix_socket_permissions=0700
      wait_until postgres 300 $pg_bin/pg_isready -q -h ${chatState}/pgsock -U postgres
      psql() { $pg_bin/psql -X -q -v ON_ERROR_STOP=1 -h ${chatState}/pgsock -U postgres -d postgres "$@"; }
      # The module's database: Synapse's own role, C collation.
      if [ "$(psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'matrix-synapse'")" != 1 ]; then
        psql -c 'CREATE ROLE "matrix-synapse" LOGIN' \
          -c "CREATE DATABASE \"matrix-synapse\" OWNER \"matrix-synapse\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
      fi

      # The agent's secrets as Synapse reads them, trimmed (modules/chat.nix).
      write_private ${run}/chat/secrets.yaml chat_secrets
      write_private ${run}/chat/oidc-client-secret oidc_client_secret
      synapse="env -i PATH=/usr/bin:/bin LANG=C.UTF-8 SSL_CERT_FILE=${chat.roots} ${chat.venv}/bin/python -m synapse.app.homeserver -c $here/etc/synapse.json -c ${run}/chat/secrets.yaml"
      (cd ${chatState} && $synapse --generate-keys >>$run/synapse.log 2>&1)
      # Synapse reads the issuer's discovery document when it starts and
      # exits without it: the portal (deployed at the same time) first.
      i=0
      until curl -sf --max-time 3 --cacert ${chat.roots} --resolve ${domain}:443:${portalHost.ipv4} \
          -o /dev/null https://${domain}/.well-known/openid-configuration; do
        i=$((i + 1))
        if [ $i -gt 120 ]; then
          echo "the portal's https://${domain}/.well-known/openid-configuration did not answer in 2 minutes: Synapse cannot start without its OpenID Connect provider" >&2
          exit 1
        fi
        sleep 1
      done
      start synapse unshare --mount --propagation private sh -c \
        "mount --bind $here/etc/chat-hosts /etc/hosts && cd ${chatState} && exec $synapse"
      # Its first start on a new database makes the schema: up to 3 minutes.
      wait_until synapse 1800 curl -sf --max-time 2 -o /dev/null http://127.0.0.1:${toString synapsePort}/health
    '';
    jitsi = ''
      mkdir -p ${run}/prosody/data ${run}/prosody/certs
      stop prosody
      start prosody /usr/bin/prosody -F --config $here/etc/prosody.cfg.lua
      wait_tcp prosody 127.0.0.1 5280
    '';
  };
in
mk "toy-services-${server.name}" ''
  mkdir -p $out/bin $out/etc $out/www $out/prosody-plugins
  here=$out
  echo "${healthz.text}" > $out/www/${healthz.file}
  ${if role == "jitsi" then ''
    cat > $out/www/index.html <<'EOH'
    <!DOCTYPE html><html><head><title>${fqdn}</title></head><body><h1>Jitsi Meet stand-in</h1><p>XMPP over BOSH at /http-bind, websocket at /xmpp-websocket.</p></body></html>
    EOH
    cp ${./mod_auth_venue_token.lua} $out/prosody-plugins/mod_auth_venue_token.lua
    cat > $out/etc/prosody.cfg.lua <<'EOC'
    ${prosodyConfig}
    EOC
    sed -i "s|@here@|$out|g" $out/etc/prosody.cfg.lua
  '' else ""}
  ${if role == "chat" then ''
    cat > $out/www/index.html <<'EOH'
    <!DOCTYPE html><html><head><title>${chatName}</title></head><body><h1>Element stand-in</h1><p>The Matrix client API is at /_matrix; log in with your ticket through the portal.</p></body></html>
    EOH
  '' else ""}
  ${if role == "chat" && withChat then ''
    cat > $out/etc/synapse.json <<'EOC'
    ${synapseConfig}
    EOC
    cat > $out/etc/synapse-log.yaml <<'EOC'
    ${synapseLog}
    EOC
    cat > $out/etc/chat-hosts <<'EOC'
    ${chatHosts}
    EOC
    sed -i "s|@here@|$out|g" $out/etc/synapse.json
    cp ${./chat-secrets.py} $out/bin/chat-secrets.py
    cat > $out/bin/chat-dump <<'EOD'
    #!/bin/sh
    # Synapse's database, as modules/chat.nix's dump: pg_dump's custom format,
    # a consistent snapshot of the live database, without the data of the
    # token tables (the same list as tokenTables there: keep them in step),
    # refusing when one is missing.
    set -e
    umask 077
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    tables="public.access_tokens public.refresh_tokens public.user_ips public.login_tokens public.open_id_tokens public.cache_invalidation_stream_by_instance"
    list=$(printf "'%s'," $tables)
    missing=$($pg_bin/psql --no-psqlrc -h ${chatState}/pgsock -U postgres --dbname=matrix-synapse -v ON_ERROR_STOP=1 -Atc \
      "SELECT string_agg(t, ' ') FROM unnest(ARRAY[''${list%,}]) AS t WHERE to_regclass(t) IS NULL")
    if [ -n "$missing" ]; then
      echo "chat-dump: no table $missing in matrix-synapse: Synapse keeps its tokens elsewhere now; not dumping" >&2
      exit 1
    fi
    $pg_bin/pg_dump -h ${chatState}/pgsock -U postgres --format=custom --dbname=matrix-synapse \
      $(printf ' --exclude-table-data=%s' $tables) \
      > ${chatState}/synapse.pgdump.new
    mv ${chatState}/synapse.pgdump.new ${chatState}/synapse.pgdump
    EOD
    cat > $out/bin/chat-export-rooms <<'EOD'
    #!/bin/sh
    # Every room's history (modules/chat-export-rooms.sh) through the admin
    # API on loopback, its admin registered with the deployed shared secret.
    exec bash ${chat.exportRooms} http://127.0.0.1:${toString synapsePort} ${secrets}/synapse-registration-secret ${chatState}/archive-admin-token ${chatState}/rooms.json
    EOD
  '' else ""}
  cat > $out/etc/nginx-main.conf <<'EOC'
  ${nginxMain (if role == "chat" then chatHealth else staticHealth) r.http}
  EOC
  cat > $out/etc/nginx-tls.conf <<'EOC'
  ${nginxTls r.https}
  EOC
  sed -i "s|@www@|$out/www|g" $out/etc/nginx-main.conf $out/etc/nginx-tls.conf
  cat > $out/etc/turnserver.conf <<'EOC'
  ${turnTemplate}
  EOC
  ${if role == "portal" then ''
    # Only the portal's: another host's system must not change (and its
    # services restart) when a BigBlueButton server joins or leaves.
    cat > $out/etc/portal.toml <<'EOC'
    ${portalConfig}
    EOC
  '' else ""}

  # Starts (or restarts) the services; `start tls` only re-reads the
  # certificate (the watcher runs it when venue deploys a renewed one).
  cat > $out/bin/start <<'EOS'
  #!/bin/sh
  set -e
  here=$(cd "$(dirname "$0")/.." && pwd)
  run=${run}
  secrets=${secrets}
  mode=$1
  mkdir -p $run/nginx
  chmod 0700 $run
  # One start at a time: the boot's and a deploy's switch may overlap. (The
  # services started below do not inherit the lock.)
  exec 9>$run/start.lock
  flock 9
  # /run is new at every boot. The first start since the boot (the boot's
  # own, or a deploy's switch that came first) drops the pid files of the
  # processes that died with the previous boot; the boot's start after a
  # switch does nothing, as systemd's start of a running unit does nothing.
  if [ ! -e /run/venue-services.started ]; then
    rm -f $run/*.pid
    : > /run/venue-services.started
  elif [ "$mode" = boot ]; then
    exit 0
  fi

  # alive PID: running, and not a zombie its new parent has yet to reap.
  alive() {
    [ "$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -c1)" != Z ] && kill -0 $1 2>/dev/null
  }
  # stop NAME [SIGNAL]: ends what the last activation started (its pid file).
  stop() {
    f=$run/$1.pid
    [ -f $f ] || return 0
    pid=$(cat $f)
    rm -f $f
    kill -s ''${2:-TERM} $pid 2>/dev/null || return 0
    i=0
    while alive $pid; do
      i=$((i + 1))
      if [ $i -gt 50 ]; then kill -9 $pid 2>/dev/null || true; break; fi
      sleep 0.1
    done
  }
  # start NAME COMMAND...: in its own session, detached from the ssh channel.
  start() {
    name=$1
    shift
    setsid "$@" >>$run/$name.log 2>&1 </dev/null 9>&- &
    echo $! > $run/$name.pid
  }
  # wait_tcp NAME HOST PORT: until it listens; fails (with the log) if it died.
  wait_tcp() {
    i=0
    until python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.5)' $2 $3 2>/dev/null; do
      i=$((i + 1))
      if [ $i -gt 150 ] || ! alive $(cat $run/$1.pid); then
        echo "$1 did not start listening on $2:$3; the end of $run/$1.log:" >&2
        tail -n 5 $run/$1.log >&2 || true
        exit 1
      fi
      sleep 0.1
    done
  }
  # wait_until NAME TRIES COMMAND...: until COMMAND succeeds, every 0.1 s;
  # fails (with the log) if NAME died or TRIES ran out.
  wait_until() {
    name=$1 tries=$2
    shift 2
    i=0
    until "$@" 2>/dev/null; do
      i=$((i + 1))
      if [ $i -gt $tries ] || ! alive $(cat $run/$name.pid); then
        echo "$name did not get ready ($*); the end of $run/$name.log:" >&2
        tail -n 5 $run/$name.log >&2 || true
        exit 1
      fi
      sleep 0.1
    done
  }
  # require FILE...: refuse to start (and stop answering /healthz) unless
  # every file exists and holds more than white space, with the modules'
  # test and message (modules/common.nix, requireFiles).
  require() {
    for f in "$@"; do
      if [ ! -s "$f" ] || ! grep -q '[^[:space:]]' "$f"; then
        echo "$f is missing or empty (the agent writes it at venue deploy): refusing to start" >&2
        stop nginx
        exit 1
      fi
    done
  }
  # write_private FILE FUNCTION: the function's output, mode 0600, in place at once.
  write_private() {
    (umask 077; $2 > $1.new)
    mv -f $1.new $1
  }
  chat_secrets() {
    python3 $here/bin/chat-secrets.py $secrets
  }
  oidc_client_secret() {
    python3 -c 'import sys; sys.stdout.write(open(sys.argv[1]).read().strip())' $secrets/oidc-client-secret
  }
  has_tls() {
    [ -s $secrets/tls-fullchain.pem ] && [ -s $secrets/tls-key.pem ]
  }
  nginx_config() {
    cat $here/etc/nginx-main.conf
    if has_tls; then cat $here/etc/nginx-tls.conf; fi
    echo "}"
  }
  coturn_config() {
    cat $here/etc/turnserver.conf
    echo "static-auth-secret=$(cat $secrets/turn-secret)"
    if has_tls; then
      echo "cert=$secrets/tls-fullchain.pem"
      echo "pkey=$secrets/tls-key.pem"
    else
      echo "no-tls"
    fi
  }

  if [ "$mode" = tls ]; then
    # What the services below start with; tls-watch compares against it. A
    # switch that held the lock meanwhile may have started them with it.
    digest=$(sh $here/bin/tls-digest)
    [ "$digest" = "$(cat $run/tls.digest 2>/dev/null)" ] && exit 0
    echo "$digest" > $run/tls.digest
    # A new certificate: nginx re-reads its config (the first one adds :443;
    # renewed ones it reads at each handshake anyway), coturn restarts.
    write_private $run/nginx.conf nginx_config
    if [ -f $run/nginx.pid ] && kill -0 $(cat $run/nginx.pid) 2>/dev/null; then
      kill -HUP $(cat $run/nginx.pid)
    fi
    ${if role == "coturn" then startRole.coturn else ""}
    exit 0
  fi

  require ${builtins.concatStringsSep " " required}
  sh $here/bin/tls-digest > $run/tls.digest
  ${startRole.${role} or ""}
  write_private $run/nginx.conf nginx_config
  stop nginx
  start nginx /usr/sbin/nginx -p $run/nginx/ -e $run/nginx/error.log -c $run/nginx.conf
  wait_tcp nginx 127.0.0.1 80
  if has_tls; then wait_tcp nginx 127.0.0.1 443; fi
  stop tls-watch
  start tls-watch sh $here/bin/tls-watch
  EOS

  # Watches the deployed certificate; other contents go to the services at
  # once, as a real host's secrets unit does (modules/common.nix): it
  # compares digests of what the services started with, so the same files
  # uploaded again (every deploy does) restart nothing.
  cat > $out/bin/tls-watch <<'EOW'
  #!/bin/sh
  here=$(cd "$(dirname "$0")/.." && pwd)
  while sleep 1; do
    [ "$(sh $here/bin/tls-digest)" = "$(cat ${run}/tls.digest 2>/dev/null)" ] && continue
    sh $here/bin/start tls || echo "reloading the certificate failed" >&2
  done
  EOW
  # The certificate and key, as one digest.
  cat > $out/bin/tls-digest <<'EOD'
  #!/bin/sh
  cat ${secrets}/tls-fullchain.pem ${secrets}/tls-key.pem 2>/dev/null | sha256sum | cut -d' ' -f1
  EOD
  chmod +x $out/bin/start $out/bin/tls-watch $out/bin/tls-digest
''
