# The event's chat: the portal at `test` (the event's domain) is the OpenID
# Connect provider of Synapse at `chat.test`, wired as lib.mkFleet wires a
# portal and a chat host. The chat host boots without its secrets and
# refuses to start Synapse, naming the file; the agent-style upload starts
# it. Then, through nginx and the agent's certificate: registration is
# refused, password login is not offered, Element's config.json names the
# homeserver with SSO only, the portal delegates the server name, federation
# is off, health asks Synapse, and a ticket holder logs in with the ticket
# (curl with a cookie jar): Synapse's SSO redirect to the portal's
# /oidc/authorize (client `synapse`, PKCE S256), the portal's ticket login,
# the callback, and an access token from m.login.token. The shared
# registration secret makes an admin through the admin API, and the archive
# item dumps Synapse's database with the ticket holder's account in it.
{ pkgs, venueModules, portalPackage }:

let
  # The agent's certificate for the event's names, from a CA every node trusts.
  certs = import ./test-certs.nix { inherit pkgs; names = [ "test" "chat.test" ]; };

  # Test secrets (they may live in the store; real ones never do).
  oidcSecret = "test-oidc-client-secret-0123456789";
  chatSecrets = {
    oidc-client-secret = oidcSecret;
    synapse-macaroon-secret = "test-macaroon-secret-5d41402abc4b2a76";
    synapse-form-secret = "test-form-secret-7d793037a0760186";
    synapse-registration-secret = "test-registration-secret-0f1e2d3c";
  };

  common = { nodes, ... }: {
    networking.hosts = {
      ${nodes.portal.networking.primaryIPAddress} = [ "test" ];
      ${nodes.chat.networking.primaryIPAddress} = [ "chat.test" ];
    };
    security.pki.certificateFiles = [ "${certs}/ca.pem" ];
  };

  # What `venue deploy` writes before the switch: the certificate.
  uploadCertificate = {
    systemd.services.test-upload-certificate = {
      wantedBy = [ "multi-user.target" ];
      requiredBy = [ "venue-tls.service" ];
      before = [ "venue-tls.service" ];
      after = [ "systemd-tmpfiles-setup.service" ];
      serviceConfig.Type = "oneshot";
      script = ''
        install -d -m 0700 /var/lib/venue/secrets
        install -m 0400 ${certs}/key.pem /var/lib/venue/secrets/tls-key.pem
        install -m 0400 ${certs}/fullchain.pem /var/lib/venue/secrets/tls-fullchain.pem
      '';
    };
  };
in
pkgs.testers.runNixOSTest {
  name = "venue-chat";

  nodes = {
    portal = {
      imports = [
        venueModules
        common
        uploadCertificate
        (import ./secrets.nix {
          portal-session = "test-portal-session-key-0123456789";
          oidc-client-secret = oidcSecret;
        })
      ];
      services.venue = {
        domain = "test";
        tls.fromAgent = true;
        # As lib.mkFleet sets them for a fleet with a chat host.
        portal = {
          enable = true;
          package = portalPackage;
          hostName = "test";
          eventFile = "${../../hosts/nixcon-2020}/event.toml";
          oidc.redirectUri = "https://chat.test/_synapse/client/oidc/callback";
          matrixHost = "chat.test";
        };
      };
    };

    chat = {
      imports = [ venueModules common uploadCertificate ];
      virtualisation.memorySize = 2048;
      services.venue = {
        domain = "test";
        tls.fromAgent = true;
        chat.enable = true;
      };
    };

    client = { pkgs, ... }: {
      imports = [ common ];
      environment.systemPackages = [ pkgs.curl ];
    };
  };

  testScript = { nodes, ... }:
    let
      chatIp = nodes.chat.networking.primaryIPAddress;
    in
    ''
      import hashlib
      import hmac
      import html
      import json
      import re
      import shlex
      from urllib.parse import parse_qs, quote, urlsplit

      secrets = json.loads(${builtins.toJSON (builtins.toJSON chatSecrets)})


      def fetch(url, *args):
          """One request from the client, no redirect followed: status, absolute Location, body."""
          out = client.succeed(
              "curl -sS -c /tmp/jar -b /tmp/jar -o /tmp/body -w '%{http_code} %{redirect_url}' "
              + " ".join(args) + " " + shlex.quote(url)
          )
          status, _, location = out.partition(" ")
          return status, location.strip(), client.succeed("cat /tmp/body")


      def query(url):
          return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


      def hidden(page, name):
          m = re.search(r'name="' + name + r'" value="([^"]*)"', page)
          assert m, f"no {name} field in {page}"
          return html.unescape(m.group(1))


      def health(path):
          return client.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' http://${chatIp}{path}")


      def json_post(node, url, body, *args):
          return node.succeed(
              f"curl -sS -X POST -H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))} "
              + " ".join(args) + " " + shlex.quote(url)
          )


      start_all()

      with subtest("without its secrets the chat does not start, naming the file"):
          chat.wait_for_unit("venue-chat-database.service")
          chat.wait_until_succeeds("systemctl is-failed venue-chat-secrets.service")
          chat.succeed(
              "journalctl -u venue-chat-secrets.service"
              " | grep -q '/var/lib/venue/secrets/oidc-client-secret is missing or empty'"
          )
          chat.fail("systemctl is-active matrix-synapse.service")

      with subtest("the agent's upload starts Synapse"):
          # As the agent writes: beside the name, then renamed into place.
          chat.succeed(" && ".join(
              f"printf %s {shlex.quote(value)} > /var/lib/venue/secrets/.{name}"
              f" && chmod 0400 /var/lib/venue/secrets/.{name}"
              f" && mv /var/lib/venue/secrets/.{name} /var/lib/venue/secrets/{name}"
              for name, value in secrets.items()
          ))
          # Not wait_for_unit: the unit may still be inactive (failed at
          # boot, restarted by the path unit) when this starts looking.
          chat.wait_until_succeeds("systemctl is-active matrix-synapse.service", timeout=180)
          chat.wait_for_open_port(8008)
          portal.wait_for_unit("venue-portal.service")
          portal.wait_for_open_port(8087)
          client.wait_until_succeeds("curl -sf https://chat.test/_matrix/client/versions", timeout=120)

      with subtest("secrets reach Synapse, not the store"):
          config = chat.succeed(
              "systemctl cat matrix-synapse.service | grep -o '/nix/store/[^ ]*homeserver.yaml' | head -1"
          ).strip()
          chat.succeed(f"grep -q /run/venue-chat/oidc-client-secret {config}")
          for value in secrets.values():
              chat.fail(f"grep -rqF {shlex.quote(value)} {config}")
          chat.succeed("grep -q /run/venue-chat/secrets.yaml /etc/systemd/system/matrix-synapse.service")
          for f in ["secrets.yaml", "oidc-client-secret"]:
              chat.succeed(f"test \"$(stat -c '%a %U %G' /run/venue-chat/{f})\" = '440 root matrix-synapse'")
          assert chat.succeed("cat /run/venue-chat/oidc-client-secret") == secrets["oidc-client-secret"]
          # Synapse would fall back to the registration secret without a
          # macaroon key (config/key.py): require the delivered values.
          delivered = json.loads(chat.succeed("cat /run/venue-chat/secrets.yaml"))  # jq's JSON: YAML too
          for key, name in [("macaroon_secret_key", "synapse-macaroon-secret"), ("form_secret", "synapse-form-secret"),
                            ("registration_shared_secret", "synapse-registration-secret")]:
              assert delivered[key] == secrets[name], key

      with subtest("Synapse's database has the C collation"):
          row = chat.succeed(
              "runuser -u postgres -- psql -tAc \"SELECT datcollate, datctype, pg_get_userbyid(datdba)"
              " FROM pg_database WHERE datname = 'matrix-synapse'\""
          ).strip()
          assert row == "C|C|matrix-synapse", row

      with subtest("registration is refused, and passwords are not offered"):
          status = client.succeed(
              "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json'"
              " -d '{\"username\": \"x\", \"password\": \"y\"}' https://chat.test/_matrix/client/v3/register"
          )
          assert status == "403", status
          flows = json.loads(client.succeed("curl -sf https://chat.test/_matrix/client/v3/login"))["flows"]
          types = [f["type"] for f in flows]
          assert "m.login.sso" in types and "m.login.token" in types, flows
          assert "m.login.password" not in types, flows
          sso = next(f for f in flows if f["type"] == "m.login.sso")
          assert [p["id"] for p in sso["identity_providers"]] == ["oidc-venue"], flows

      with subtest("Element is served, for this homeserver and SSO only"):
          status, _, page = fetch("https://chat.test/")
          assert status == "200" and "<title>" in page, (status, page[:200])
          conf = json.loads(client.succeed("curl -sf https://chat.test/config.json"))
          assert conf["default_server_config"]["m.homeserver"] == {"base_url": "https://chat.test", "server_name": "test"}, conf
          assert conf["sso_redirect_options"]["immediate"] is True, conf
          assert conf["disable_custom_urls"] is True and conf["disable_guests"] is True, conf
          assert conf["default_federate"] is False, conf
          # No outside service learns who uses the event's chat.
          raw = client.succeed("curl -sf https://chat.test/config.json")
          for host in ["vector.im", "element.io", "maptiler", "matrix.org"]:
              assert host not in raw, (host, raw)

      with subtest("the portal delegates the server name to the chat host"):
          headers = client.succeed("curl -sf -D - -o /tmp/wk https://test/.well-known/matrix/client")
          assert re.search(r"(?im)^access-control-allow-origin: \*\s*$", headers), headers
          assert json.loads(client.succeed("cat /tmp/wk")) == {"m.homeserver": {"base_url": "https://chat.test"}}
          server = json.loads(client.succeed("curl -sf https://test/.well-known/matrix/server"))
          assert server == {"m.server": "chat.test:443"}, server

      with subtest("federation is off"):
          for path in ["/_matrix/federation/v1/version", "/_matrix/key/v2/server"]:
              status = client.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' https://chat.test{path}")
              assert status == "404", (path, status)
          chat.fail("ss -ltnH | grep -q ':8448 '")

      with subtest("health asks Synapse"):
          assert health("/healthz") == "200"
          assert health("/healthz/chat") == "200"
          chat.succeed("systemctl stop matrix-synapse.service")
          assert health("/healthz/chat") == "502"
          chat.succeed("systemctl start matrix-synapse.service")
          chat.wait_for_open_port(8008)
          client.wait_until_succeeds(
              "[ $(curl -s -o /dev/null -w '%{http_code}' http://${chatIp}/healthz/chat) = 200 ]", timeout=120
          )

      with subtest("Synapse's SSO redirect lands on the portal, for its client, with PKCE"):
          code = portal.succeed("venue-portal-ctl tickets add ada@example.org --name 'Ada Lovelace'").split()[-1]
          start = "https://chat.test/_matrix/client/v3/login/sso/redirect/oidc-venue?redirectUrl=" + quote("https://chat.test/", safe="")
          status, authorize, _ = fetch(start)
          assert status == "302", (status, authorize)
          parts = urlsplit(authorize)
          assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://test/oidc/authorize", authorize
          q = query(authorize)
          assert q["client_id"] == "synapse", q
          assert q["redirect_uri"] == "https://chat.test/_synapse/client/oidc/callback", q
          assert q["response_type"] == "code" and "openid" in q["scope"].split(), q
          assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43, q

      with subtest("the ticket holder logs in at the portal and gets an access token"):
          status, login, _ = fetch(authorize)
          assert status in ("302", "303") and login.startswith("https://test/login?"), (status, login)
          status, _, page = fetch(login)
          assert status == "200", status
          status, back, _ = fetch(
              "https://test/login",
              "--data-urlencode email=ada@example.org",
              f"--data-urlencode code={code}",
              f"--data-urlencode csrf={hidden(page, 'csrf')}",
              "--data-urlencode " + shlex.quote("next=" + hidden(page, "next")),
          )
          assert status == "303" and back.startswith("https://test/oidc/authorize?"), (status, back)
          status, callback, _ = fetch(back)
          assert callback.startswith("https://chat.test/_synapse/client/oidc/callback?"), (status, callback)
          assert "code" in query(callback) and "state" in query(callback), callback
          status, done, body = fetch(callback)
          assert status == "302" and done.startswith("https://chat.test/?"), (status, done, body)
          token = query(done)["loginToken"]
          login = json.loads(json_post(client, "https://chat.test/_matrix/client/v3/login", {"type": "m.login.token", "token": token}))
          assert login["user_id"] == "@ada.lovelace:test", login
          me = json.loads(client.succeed(
              f"curl -sf -H 'Authorization: Bearer {login['access_token']}' https://chat.test/_matrix/client/v3/account/whoami"
          ))
          assert me["user_id"] == "@ada.lovelace:test", me
          # The login token is single-use.
          status = client.succeed(
              "curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d "
              + shlex.quote(json.dumps({"type": "m.login.token", "token": token}))
              + " https://chat.test/_matrix/client/v3/login"
          )
          assert status == "403", status

      with subtest("the shared registration secret makes an admin (admin API: loopback and adminFrom only)"):
          api = "http://127.0.0.1:8008/_synapse/admin/v1/register"

          def register(secret, user):
              nonce = json.loads(chat.succeed(f"curl -sf {api}"))["nonce"]
              mac = hmac.new(secret.encode(), b"\x00".join([nonce.encode(), user.encode(), b"orga-password-0123", b"admin"]), hashlib.sha1)
              body = {"nonce": nonce, "username": user, "password": "orga-password-0123", "admin": True, "mac": mac.hexdigest()}
              return json.loads(json_post(chat, api, body))

          refused = register("not-the-secret", "intruder")
          assert refused.get("errcode") == "M_FORBIDDEN", refused
          orga = register(secrets["synapse-registration-secret"], "orga")
          assert orga["user_id"] == "@orga:test", orga
          ada = json.loads(chat.succeed(
              f"curl -sf -H 'Authorization: Bearer {orga['access_token']}'"
              " http://127.0.0.1:8008/_synapse/admin/v2/users/@ada.lovelace:test"
          ))
          assert ada["displayname"] == "Ada Lovelace", ada
          assert client.succeed("curl -s -o /dev/null -w '%{http_code}' https://chat.test/_synapse/admin/v1/register") == "403"

      with subtest("the archive item exports every room's history"):
          room = json.loads(json_post(chat, "http://127.0.0.1:8008/_matrix/client/v3/createRoom",
                                      {"name": "Hallway", "topic": "Talk here"},
                                      f"-H 'Authorization: Bearer {orga['access_token']}'"))["room_id"]
          chat.succeed(
              f"curl -sf -X PUT -H 'Authorization: Bearer {orga['access_token']}' -d '{{\"msgtype\": \"m.text\", \"body\": \"hello archive\"}}'"
              f" http://127.0.0.1:8008/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"
          )
          item = json.loads(chat.succeed("cat /etc/venue/archive.json"))["items"]["rooms.json"]
          chat.succeed(item["dump"])
          rooms = json.loads(chat.succeed(f"cat {item['path']}"))["rooms"]
          hallway = [r for r in rooms if r["room_id"] == room][0]
          assert (hallway["name"], hallway["topic"]) == ("Hallway", "Talk here"), hallway
          assert hallway["events"][-1]["content"]["body"] == "hello archive", hallway
          assert hallway["events"][-1]["sender"] == "@orga:test", hallway
          chat.succeed(f"! grep -rqF {shlex.quote(secrets['synapse-registration-secret'])} {item['path']} /var/lib/venue-chat/archive-admin-token")

      with subtest("the archive item dumps Synapse's database"):
          item = json.loads(chat.succeed("cat /etc/venue/archive.json"))["items"]["synapse.pgdump"]
          chat.succeed(item["dump"])
          chat.succeed(f"pg_restore --data-only --table=users -f - {item['path']} | grep -q '@ada.lovelace:test'")
          # No login token anywhere in it (Synapse also keeps them in
          # user_ips and in its cache invalidation stream).
          chat.fail(f"pg_restore --data-only -f - {item['path']} | grep -qF '{login['access_token']}'")
          # A token table that is not there (renamed by a newer Synapse) stops
          # the dump instead of letting its successor's tokens through.
          psql = "runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 --dbname=matrix-synapse -c"
          chat.succeed(f"{psql} 'ALTER TABLE user_ips RENAME TO user_ips_renamed'")
          out = chat.fail(f"{item['dump']} 2>&1")
          assert "public.user_ips" in out, out
          chat.succeed(f"{psql} 'ALTER TABLE user_ips_renamed RENAME TO user_ips'")
          chat.succeed(item["dump"])
    '';
}
