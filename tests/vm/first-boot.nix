# A Jitsi main host with coturn beside it, configured as lib.mkFleet does
# (the agent's certificate, TURN at the event's coturn), boots with no
# secrets at all, as a server installed or booted from a snapshot does:
# every unit that reads a secret refuses to start (no prosody that takes a
# token signed with an empty key). Then the secrets arrive the way
# `venue deploy` writes them (the agent's own upload script, run here as it
# runs over SSH), and without anything else: tokens signed with the real
# secret are accepted and others refused, coturn allocates with REST
# credentials, jicofo sees the bridge, and the health endpoints answer from
# the services. The same secrets again restart nothing; a new JWT secret
# takes effect.
{ pkgs, venueModules }:

let
  inherit (pkgs) lib;

  # The agent's certificate for the event's domain and `*.<domain>`.
  certs = import ./test-certs.nix { inherit pkgs; names = [ "venue.test" "*.venue.test" ]; };

  # The shell command `venue deploy` runs over SSH (`upload_script` with
  # REMOTE_DIR), taken from the agent's source so that this test runs what
  # the agent runs.
  uploadScript =
    let
      source = builtins.readFile ../../agent/src/deploy/secrets.rs;
      remoteDir = builtins.match ".*pub const REMOTE_DIR: &str = \"([^\"]*)\";.*" source;
      found = builtins.match
        ".*fn upload_script\\(dir: &str\\).*Ok\\(format!\\([[:space:]]*\"(([^\"\\\\]|\\\\.)*)\"[[:space:]]*\\)\\).*"
        source;
      # A Rust string: `\` at a line's end drops the newline and the next
      # line's indentation; `\"` and `\\` are escapes. Then format!'s
      # `{dir}`, `{{` and `}}`.
      joined = lib.concatStrings (lib.filter builtins.isString
        (builtins.split "\\\\\n[[:space:]]*" (builtins.head found)));
      script = builtins.replaceStrings
        [ "\\\"" "\\\\" ]
        [ "\"" "\\" ]
        joined;
    in
    if remoteDir == null || found == null || !(lib.hasInfix "mv -f" script)
    then throw "tests/vm/first-boot.nix: agent/src/deploy/secrets.rs has no REMOTE_DIR or upload_script as expected"
    else builtins.replaceStrings [ "{dir}" "{{" "}}" ] [ (builtins.head remoteDir) "{" "}" ] script;

  # What the agent sends on the script's stdin: "name length\n" and the
  # bytes, for each secret of the host's roles (sorted), then the key and
  # the chain. $1: a directory with one file per secret.
  deliver = pkgs.writeShellScript "venue-test-deliver" ''
    set -euo pipefail
    dir=$1
    {
      for name in $(ls "$dir" | sort); do
        printf '%s %s\n' "$name" "$(stat -c %s "$dir/$name")"
        cat "$dir/$name"
      done
      printf 'tls-key.pem %s\n' "$(stat -c %s ${certs}/key.pem)"
      cat ${certs}/key.pem
      printf 'tls-fullchain.pem %s\n' "$(stat -c %s ${certs}/fullchain.pem)"
      cat ${certs}/fullchain.pem
    } | ${pkgs.bash}/bin/bash -c ${lib.escapeShellArg uploadScript}
  '';
in
pkgs.testers.runNixOSTest {
  name = "venue-first-boot";

  nodes = {
    server = { config, ... }: {
      imports = [ venueModules ];
      virtualisation.memorySize = 3072;
      networking.extraHosts = ''
        ${config.networking.primaryIPAddress} meet.venue.test turn.venue.test
      '';
      # What lib.mkFleet gives a jitsi host and a coturn host of the event.
      services.venue = {
        domain = "venue.test";
        tls.fromAgent = true;
        turn.host = "turn.venue.test";
        jitsi = {
          enable = true;
          hostName = "meet.venue.test";
          publicAddress = config.networking.primaryIPAddress;
          localAddress = config.networking.primaryIPAddress;
        };
        coturn = {
          enable = true;
          hostName = "turn.venue.test";
          # Relay addresses in the test network are private ones.
          deniedPeerRanges = [ ];
        };
      };
    };

    client = { nodes, pkgs, ... }: {
      environment.systemPackages = [ pkgs.coturn pkgs.curl ];
      networking.extraHosts = ''
        ${nodes.server.networking.primaryIPAddress} meet.venue.test turn.venue.test
      '';
      # The agent's certificate is from a CA clients trust.
      security.pki.certificateFiles = [ "${certs}/ca.pem" ];
    };
  };

  testScript = { nodes, ... }:
    let
      ip = nodes.server.networking.primaryIPAddress;
    in
    ''
      import base64
      import hashlib
      import hmac
      import json
      import re
      import time

      units = ["prosody", "jicofo", "jitsi-videobridge2", "coturn"]
      first = {
          "jvb-muc-password": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
          "jwt-secret": "5d41402abc4b2a76b9719d911017c592",
          "turn-secret": "7d793037a0760186574b0282f2f435e7",
      }


      def b64url(data):
          return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


      def token(secret, room="room1"):
          """A Jitsi token as the portal signs it (HS256)."""
          header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
          claims = {
              "iss": "venue",
              "aud": "jitsi",
              "sub": "meet.venue.test",
              "room": room,
              "exp": int(time.time()) + 3600,
              "context": {"user": {"name": "Test Attendee"}},
          }
          body = b64url(json.dumps(claims).encode())
          signature = b64url(hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest())
          return f"{header}.{body}.{signature}"


      def login(machine, url):
          """Opens a BOSH session with a token and tries SASL ANONYMOUS; returns all replies."""

          def post(body):
              _rc, out = machine.execute(
                  "curl -sS -X POST -H 'Content-Type: text/xml; charset=utf-8' "
                  f"--data-binary \"{body}\" '{url}'"
              )
              return out

          opened = post(
              "<body rid='1' to='meet.venue.test' wait='10' hold='1' ver='1.6' "
              "xmlns='http://jabber.org/protocol/httpbind' "
              "xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
          )
          sid = re.search(r"sid=['\"]([^'\"]+)['\"]", opened)
          if sid is None:
              return opened
          return opened + post(
              f"<body rid='2' sid='{sid.group(1)}' xmlns='http://jabber.org/protocol/httpbind'>"
              "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/></body>"
          )


      def web_login(secret):
          return login(client, "https://meet.venue.test/http-bind?room=room1&token=" + token(secret))


      def turn_credentials(secret, user="attendee"):
          username = f"{int(time.time()) + 3600}:{user}"
          mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
          return username, base64.b64encode(mac).decode()


      def allocate(secret):
          username, password = turn_credentials(secret)
          return f"turnutils_uclient -y -c -n 1 -X -p 3478 -u '{username}' -w '{password}' ${ip}"


      def deliver(values):
          """Writes the secrets as `venue deploy` does."""
          server.succeed("rm -rf /tmp/deliver && install -d -m 0700 /tmp/deliver")
          for name, value in values.items():
              server.succeed(f"printf %s '{value}' > /tmp/deliver/{name}")
          server.succeed("${deliver} /tmp/deliver")


      def invocation(unit):
          return server.succeed(f"systemctl show -p InvocationID --value {unit}.service").strip()


      def runs():
          """How often the path unit's service has compared the secrets."""
          return int(server.succeed(
              "journalctl -b -u venue-secrets-changed.service -o cat | grep -c '^secrets \\(un\\)\\?changed' || true"
          ).strip())


      def status(path):
          return client.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' http://${ip}{path}").strip()


      start_all()
      server.wait_for_unit("multi-user.target")
      client.wait_for_unit("multi-user.target")

      with subtest("booted without secrets: an empty, private, watched directory"):
          assert server.succeed("stat -c '%a %U %G' /var/lib/venue/secrets").strip() == "700 root root"
          assert server.succeed("ls -A /var/lib/venue/secrets").strip() == ""
          server.wait_for_unit("venue-secrets-changed.path")

      with subtest("every unit that reads a secret refuses to start"):
          server.wait_until_succeeds("systemctl is-failed venue-jitsi-secrets.service")
          server.succeed("journalctl -b -u venue-jitsi-secrets -o cat | grep -q 'jwt-secret is missing or empty'")
          server.wait_until_succeeds("systemctl is-failed venue-tls.service")
          server.succeed("journalctl -b -u venue-tls -o cat | grep -q 'tls-fullchain.pem is missing or empty'")
          server.wait_until_succeeds("systemctl is-failed coturn.service")
          for unit in units:
              server.fail(f"systemctl is-active {unit}.service")
          server.fail("test -e /run/venue-jitsi/prosody.env")

      with subtest("no prosody takes a token signed with an empty key"):
          for secret in ["", "anything"]:
              reply = login(server, "http://127.0.0.1:5280/http-bind?room=room1&token=" + token(secret))
              assert "<success" not in reply, reply
          server.fail("curl -s http://127.0.0.1:5280/http-bind")

      with subtest("the secrets arrive as venue deploy writes them"):
          deliver(first)
          for unit in units + ["venue-jitsi-secrets", "venue-tls", "nginx"]:
              server.wait_until_succeeds(f"systemctl is-active {unit}.service", timeout=300)
          server.succeed("journalctl -b -u venue-secrets-changed.service -o cat | grep -q 'secrets changed: restarted .*venue-jitsi-secrets.service'")
          files = server.succeed("stat -c '%a %U %n' /var/lib/venue/secrets/* /var/lib/venue/secrets/.[!.]* 2>/dev/null || true")
          assert ".tmp" not in files, files
          for name in list(first) + ["tls-key.pem", "tls-fullchain.pem"]:
              assert f"400 root /var/lib/venue/secrets/{name}" in files, (name, files)

      with subtest("the web app serves the agent's certificate"):
          client.wait_until_succeeds("curl -sSf https://meet.venue.test/ | grep -q '<title>Jitsi Meet</title>'", timeout=120)

      with subtest("tokens: the real secret opens, an empty or wrong key does not"):
          client.wait_until_succeeds("curl -sf https://meet.venue.test/http-bind", timeout=120)
          reply = web_login(first["jwt-secret"])
          assert "<success" in reply, reply
          for secret in ["", "not-the-secret"]:
              reply = web_login(secret)
              assert "<success" not in reply, (secret, reply)

      with subtest("coturn allocates with REST credentials from the delivered secret"):
          server.wait_for_open_port(3478)
          client.wait_until_succeeds(allocate(first["turn-secret"]), timeout=60)
          client.fail(allocate("not-the-secret"))

      with subtest("the bridge is connected"):
          server.wait_until_succeeds("curl -sf http://127.0.0.1:8080/about/health", timeout=300)
          server.wait_until_succeeds(
              "journalctl -b -u jicofo -o cat | grep -q 'jvbbrewery@internal.auth.meet.venue.test/'", timeout=300
          )

      with subtest("health endpoints answer from the services"):
          assert status("/healthz") == "200"
          assert status("/healthz/jitsi") == "200"
          assert status("/healthz/coturn") == "200"

      with subtest("the same secrets again restart nothing"):
          before = {unit: invocation(unit) for unit in units}
          count = runs()
          deliver(first)
          server.wait_until_succeeds(f"[ $(journalctl -b -u venue-secrets-changed.service -o cat | grep -c '^secrets \\(un\\)\\?changed') -gt {count} ]")
          server.wait_until_succeeds(
              "[ \"$(systemctl show -p ActiveState --value venue-secrets-changed.service)\" = inactive ]"
          )
          server.succeed("journalctl -b -u venue-secrets-changed.service -o cat | grep -q 'secrets unchanged'")
          assert {unit: invocation(unit) for unit in units} == before

      with subtest("a new JWT secret takes effect, and restarts only what reads it"):
          prosody = invocation("prosody")
          coturn = invocation("coturn")
          deliver({**first, "jwt-secret": "9e107d9d372bb6826bd81d3542a419d6"})
          server.wait_until_succeeds(f"[ \"$(systemctl show -p InvocationID --value prosody.service)\" != {prosody} ]")
          server.wait_until_succeeds("systemctl is-active prosody.service")
          client.wait_until_succeeds("curl -sf https://meet.venue.test/http-bind", timeout=120)
          reply = web_login("9e107d9d372bb6826bd81d3542a419d6")
          assert "<success" in reply, reply
          reply = web_login(first["jwt-secret"])
          assert "<success" not in reply, reply
          assert invocation("coturn") == coturn, "coturn does not read the JWT secret"
    '';
}
