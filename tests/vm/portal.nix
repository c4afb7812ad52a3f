# The attendee portal behind nginx: the service is up, the login page is
# served, and a ticket holder who logs in (email, code, CSRF token) gets a
# join URL for a Jitsi room with a token signed with the venue's JWT secret.
# TLS is the agent's certificate (services.venue.tls.fromAgent), not ACME:
# nginx serves it, and a replaced one is served after the path unit fires.
# Without one of its secrets (missing or empty) the portal does not start,
# and the agent's upload of it starts the portal again.
{ pkgs, venueModules, portalPackage }:

let
  # Test-only certificates (test secrets may live in the store; real ones never do).
  certs = pkgs.runCommand "venue-test-certs" { nativeBuildInputs = [ pkgs.openssl ]; } ''
    mkdir $out
    for n in first second; do
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=$n" -addext "subjectAltName=DNS:test,DNS:*.test,DNS:portal" \
        -keyout $out/$n-key.pem -out $out/$n.pem
    done
  '';
in
pkgs.testers.runNixOSTest {
  name = "venue-portal";

  nodes = {
    portal = {
      imports = [
        venueModules
        (import ./secrets.nix {
          portal-session = "test-portal-session-key-0123456789";
          bbb-secret = "test-bbb-secret";
          jwt-secret = "test-jwt-secret";
          turn-secret = "test-turn-secret";
        })
      ];
      # What `venue deploy` does before the switch: the certificate is there.
      systemd.services.test-upload-certificate = {
        wantedBy = [ "multi-user.target" ];
        requiredBy = [ "venue-tls.service" ];
        before = [ "venue-tls.service" ];
        after = [ "systemd-tmpfiles-setup.service" ];
        serviceConfig.Type = "oneshot";
        script = ''
          install -m 0400 ${certs}/first-key.pem /var/lib/venue/secrets/tls-key.pem
          install -m 0400 ${certs}/first.pem /var/lib/venue/secrets/tls-fullchain.pem
        '';
      };

      services.venue = {
        domain = "test";
        turn.host = "turn.test";
        tls.fromAgent = true;
        portal = {
          enable = true;
          package = portalPackage;
          hostName = "portal";
          # Written by the test script: the event has to take place today.
          eventFile = "/run/venue-test/event.toml";
          bbbServers = [{ name = "bbb-1"; url = "https://bbb-1.test/bigbluebutton/api"; }];
          jitsi.domain = "meet.test";
        };
      };
    };

    client = { pkgs, ... }: {
      environment.systemPackages = [ pkgs.curl pkgs.openssl ];
    };
  };

  testScript = { nodes, ... }: ''
    import base64
    import datetime
    import hashlib
    import hmac
    import json
    import re
    import shlex

    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    event = f"""
    id = "vmtest"
    name = "venue VM test"
    timezone = "UTC"
    domain = "test"
    attendees = 10

    [[day]]
    date = "{today}"
    open = "00:00"
    close = "23:59"

    [[room]]
    name = "Hack"
    kind = "hack"
    backend = "jitsi"
    peak = 5
    """


    def curl(args):
        return client.succeed(f"curl -sSk -c /tmp/jar -b /tmp/jar {args}")


    def verify_jwt(token, secret):
        header, body, signature = token.split(".")
        expected = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        assert hmac.compare_digest(expected, given), "token not signed with the JWT secret"
        return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


    start_all()

    with subtest("the service starts on the event"):
        portal.succeed("mkdir -p /run/venue-test")
        portal.succeed(f"printf %s {shlex.quote(event)} > /run/venue-test/event.toml")
        portal.succeed("systemctl reset-failed venue-portal.service; systemctl restart venue-portal.service")
        portal.wait_for_unit("venue-portal.service")
        portal.wait_for_unit("nginx.service")
        portal.wait_for_open_port(8087)

    with subtest("its configuration names secret files, never secrets"):
        config = portal.succeed(
            "systemctl cat venue-portal.service | grep -o '/nix/store/[^ ]*venue-portal.toml' | head -1"
        ).strip()
        portal.succeed(f"grep -q /run/credentials/venue-portal.service/jwt-secret {config}")
        portal.fail(f"grep -q test-jwt-secret {config}")

    with subtest("nginx serves the agent's certificate, not an ACME one"):
        assert ${builtins.toJSON (builtins.attrNames nodes.portal.security.acme.certs)} == []

        def served():
            return client.succeed(
                "openssl s_client -connect portal:443 -servername portal </dev/null 2>/dev/null"
                " | openssl x509 -noout -fingerprint -sha256"
            ).strip()

        def fingerprint(name):
            return portal.succeed(f"${pkgs.openssl}/bin/openssl x509 -noout -fingerprint -sha256 -in ${certs}/{name}.pem").strip()

        client.wait_until_succeeds("openssl s_client -connect portal:443 </dev/null")
        assert served() == fingerprint("first"), served()

    with subtest("a renewed certificate is served after the upload, without a switch"):
        portal.wait_for_unit("venue-portal.service")
        before = portal.succeed("systemctl show -P InvocationID venue-portal.service").strip()
        portal.succeed("install -m 0400 ${certs}/second-key.pem /var/lib/venue/secrets/tls-key.pem")
        portal.succeed("install -m 0400 ${certs}/second.pem /var/lib/venue/secrets/tls-fullchain.pem")
        client.wait_until_succeeds(
            f"openssl s_client -connect portal:443 -servername portal </dev/null 2>/dev/null"
            f" | openssl x509 -noout -fingerprint -sha256 | grep -qxF '{fingerprint('second')}'"
        )
        portal.succeed("systemctl is-active nginx.service")
        # Only what reads the certificate restarted: the portal (behind
        # nginx) did not, so nobody's running request was cut.
        portal.wait_until_succeeds("[ \"$(systemctl show -P ActiveState venue-secrets-changed.service)\" = inactive ]")
        assert portal.succeed("systemctl show -P InvocationID venue-portal.service").strip() == before
        # nginx reads its own copy: the agent's files stay root-only.
        portal.succeed("test \"$(stat -c '%a %U' /var/lib/venue/secrets/tls-key.pem)\" = '400 root'")
        portal.succeed("test \"$(stat -c '%a %U %G' /run/venue-tls/key.pem)\" = '440 root nginx'")

    with subtest("health endpoints answer through nginx"):
        client.wait_for_unit("network.target")
        portal.wait_for_open_port(8087)
        client.succeed("curl -sf http://${nodes.portal.networking.primaryIPAddress}/healthz")
        client.succeed("curl -sf http://${nodes.portal.networking.primaryIPAddress}/healthz/portal")

    with subtest("the login page is served"):
        page = curl("https://portal/login")
        assert "<form" in page and 'name="email"' in page and 'name="code"' in page, page
        csrf = re.search(r'<input[^>]*name="csrf"[^>]*>', page).group(0)
        csrf = re.search(r'value="([^"]*)"', csrf).group(1)

    with subtest("a ticket holder logs in"):
        code = portal.succeed("venue-portal-ctl tickets add alice@example.org").split()[-1]
        status = curl(
            "-o /dev/null -w '%{http_code}' "
            + f"--data-urlencode email=alice@example.org --data-urlencode code={code} "
            + f"--data-urlencode csrf={csrf} https://portal/login"
        )
        assert status in ("302", "303"), status

    with subtest("and gets a signed join URL for the hack room"):
        # The welcome page has a Join form per room (POST with the CSRF token);
        # the portal answers 303 to the Jitsi room with a token.
        page = curl("https://portal/")
        form = re.search(r'<form[^>]*action="/rooms/hack/join".*?</form>', page, re.S)
        assert form, page
        token = re.search(r'name="csrf" value="([^"]*)"', form.group(0)).group(1)
        location = curl(
            "-o /dev/null -w '%{redirect_url}' "
            + f"--data-urlencode csrf={token} https://portal/rooms/hack/join"
        )
        assert location.startswith("https://meet.test/"), location
        jwt = re.search(r"jwt=([A-Za-z0-9_.-]+)", location).group(1)
        claims = verify_jwt(jwt, "test-jwt-secret")
        assert claims["iss"] == "venue" and claims.get("room"), claims
        client.fail(
            "curl -sk -o /dev/null -w '%{http_code}' -b /tmp/jar -X POST https://portal/rooms/hack/join | grep -q 303"
        )

    with subtest("without one of its secrets the portal refuses to start, naming it"):
        # The test, not the path unit, restarts the portal here.
        portal.succeed("systemctl stop venue-secrets-changed.path")
        portal.succeed("install -m 0400 /dev/null /var/lib/venue/secrets/jwt-secret")
        portal.fail("systemctl restart venue-portal.service")
        portal.succeed(
            "journalctl -u venue-portal.service | grep -q '/var/lib/venue/secrets/jwt-secret is missing or empty'"
        )
        portal.succeed("rm /var/lib/venue/secrets/jwt-secret")
        portal.fail("systemctl restart venue-portal.service")
        # Restart=on-failure gives up after its start limit.
        portal.wait_until_succeeds("systemctl is-failed venue-portal.service", timeout=60)

    with subtest("the agent's upload starts it again"):
        portal.succeed("systemctl start venue-secrets-changed.path")
        # As the agent writes: beside the name, then renamed into place.
        portal.succeed(
            "printf test-jwt-secret > /var/lib/venue/secrets/.jwt-secret"
            " && chmod 0400 /var/lib/venue/secrets/.jwt-secret"
            " && mv /var/lib/venue/secrets/.jwt-secret /var/lib/venue/secrets/jwt-secret"
        )
        portal.wait_until_succeeds("systemctl is-active venue-portal.service", timeout=60)
        portal.wait_for_open_port(8087)
        client.succeed("curl -sf http://${nodes.portal.networking.primaryIPAddress}/healthz/portal")
  '';
}
