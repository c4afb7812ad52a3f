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
#
# Configuration holding a secret is written at activation below
# /var/lib/venue/run (mode 0700), never into the store; everything else is
# here. Pid files there let a re-activation stop what the previous one started.
{ mk, fleet, server, healthz, portalPackage ? null, bbbPackage ? null, eventFile }:
let
  domain = fleet.domain or "testbed.example.org";
  fqdn = "${server.name}.${domain}";
  run = "/var/lib/venue/run";
  secrets = "/var/lib/venue/secrets";
  role = server.role;
  ipv4 = server.ipv4 or null;
  others = r: builtins.filter (s: s.role == r && !(s.static or false)) fleet.servers;

  # BBB's supportedChecksumAlgorithms (BBB >= 2.6 lets the operator choose):
  # SHA-1 off, so the tests see a disabled algorithm refused.
  bbbChecksums = "sha256,sha384,sha512";

  # nginx: its pid, logs and temporary files are the host's own.
  nginxMain = locations: ''
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
        location = /healthz { root @www@; }
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
      # The portal answers everything, /healthz included.
      https = if portalPackage == null then "location / { root @www@; }" else "location / { ${proxy 8087} }";
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

  hostOf = s: "${s.name}.${domain}";
  portalConfig = ''
    session_secret_file = "${secrets}/portal-session"
    public_url = "https://${domain}"
    poll_interval_seconds = 5
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
    (let t = others "coturn"; in if t == [ ] then [ ] else [ (builtins.head t) ]));

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
  cat > $out/etc/nginx-main.conf <<'EOC'
  ${nginxMain r.http}
  EOC
  cat > $out/etc/nginx-tls.conf <<'EOC'
  ${nginxTls r.https}
  EOC
  sed -i "s|@www@|$out/www|g" $out/etc/nginx-main.conf $out/etc/nginx-tls.conf
  cat > $out/etc/turnserver.conf <<'EOC'
  ${turnTemplate}
  EOC
  cat > $out/etc/portal.toml <<'EOC'
  ${portalConfig}
  EOC

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

  # alive PID: running, and not a zombie its new parent has yet to reap.
  alive() {
    [ "$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -c1)" != Z ] && kill -0 $1 2>/dev/null
  }
  # stop NAME: ends what the last activation started (its pid file).
  stop() {
    f=$run/$1.pid
    [ -f $f ] || return 0
    pid=$(cat $f)
    rm -f $f
    kill $pid 2>/dev/null || return 0
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
    setsid "$@" >>$run/$name.log 2>&1 </dev/null &
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
  # write_private FILE FUNCTION: the function's output, mode 0600, in place at once.
  write_private() {
    (umask 077; $2 > $1.new)
    mv -f $1.new $1
  }
  has_tls() {
    [ -r $secrets/tls-fullchain.pem ] && [ -r $secrets/tls-key.pem ]
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
    # A new certificate: nginx re-reads its config (the first one adds :443;
    # renewed ones it reads at each handshake anyway), coturn restarts.
    write_private $run/nginx.conf nginx_config
    if [ -f $run/nginx.pid ] && kill -0 $(cat $run/nginx.pid) 2>/dev/null; then
      kill -HUP $(cat $run/nginx.pid)
    fi
    ${if role == "coturn" then startRole.coturn else ""}
    exit 0
  fi

  ${startRole.${role} or ""}
  write_private $run/nginx.conf nginx_config
  stop nginx
  start nginx /usr/sbin/nginx -p $run/nginx/ -e $run/nginx/error.log -c $run/nginx.conf
  wait_tcp nginx 127.0.0.1 80
  if has_tls; then wait_tcp nginx 127.0.0.1 443; fi
  stop tls-watch
  start tls-watch sh $here/bin/tls-watch
  EOS

  # Watches the deployed certificate; a new one (another inode or mtime)
  # goes to the services at once, as a real host's reload hook does.
  cat > $out/bin/tls-watch <<'EOW'
  #!/bin/sh
  here=$(cd "$(dirname "$0")/.." && pwd)
  chain=${secrets}/tls-fullchain.pem
  last=$(stat -c %Y.%i $chain 2>/dev/null || echo none)
  while sleep 1; do
    now=$(stat -c %Y.%i $chain 2>/dev/null || echo none)
    [ "$now" = "$last" ] && continue
    last=$now
    sh $here/bin/start tls || echo "reloading the certificate failed" >&2
  done
  EOW
  chmod +x $out/bin/start $out/bin/tls-watch
''
