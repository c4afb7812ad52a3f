# The main Jitsi host and an extra videobridge host: every unit comes up,
# the web app answers with its title, focus and the videobridge log in to
# prosody, the second bridge joins the bridge MUC over TLS it verifies (and
# not with a certificate it does not trust), prosody admits only clients
# with a token signed with the venue's JWT secret and lets them into the
# token's room only, its HTTP port is loopback only, and the health
# endpoints follow prosody and the bridge.
# Model: nixpkgs' nixos/tests/jitsi-meet.nix.
{ pkgs, venueModules }:

let
  # The main host's certificate, as the agent's would be for the event.
  certs = import ./test-certs.nix { inherit pkgs; names = [ "server" ]; };
in
pkgs.testers.runNixOSTest {
  name = "venue-jitsi";

  nodes = {
    server = { config, ... }: {
      imports = [
        venueModules
        (import ./secrets.nix {
          jwt-secret = "test-jwt-secret";
          jvb-muc-password = "test-bridge-password";
        })
      ];
      virtualisation.memorySize = 3072;
      services.venue = {
        domain = "test";
        tls = {
          certificateFile = "${certs}/fullchain.pem";
          keyFile = "${certs}/key.pem";
        };
        jitsi = {
          enable = true;
          hostName = "server";
          publicAddress = config.networking.primaryIPAddress;
          localAddress = config.networking.primaryIPAddress;
          # The bridge may reach "server" by either family (/etc/hosts).
          publicAddress6 = config.networking.primaryIPv6Address;
          bridges.acceptRemote = true;
        };
      };
    };

    bridge = { config, ... }: {
      imports = [
        venueModules
        (import ./secrets.nix { jvb-muc-password = "test-bridge-password"; })
      ];
      virtualisation.memorySize = 2048;
      # What makes the main host's certificate valid here, as Let's Encrypt's
      # root does for a real one.
      security.pki.certificateFiles = [ "${certs}/ca.pem" ];
      services.venue = {
        domain = "test";
        jvb = {
          enable = true;
          mainHost = "server";
          hostName = "bridge";
          nickname = "bridge";
          publicAddress = config.networking.primaryIPAddress;
          localAddress = config.networking.primaryIPAddress;
        };
      };
    };

    client = { pkgs, ... }: {
      environment.systemPackages = [ pkgs.curl ];
      security.pki.certificateFiles = [ "${certs}/ca.pem" ];
    };
  };

  testScript = { nodes, ... }: ''
    import base64
    import hashlib
    import hmac
    import json
    import re
    import time


    def b64url(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


    def token(secret, room="room1"):
        """A Jitsi token as the portal signs it (HS256)."""
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "iss": "venue",
            "aud": "jitsi",
            "sub": "server",
            "room": room,
            "exp": int(time.time()) + 3600,
            "context": {"user": {"name": "Test Attendee"}},
        }
        body = b64url(json.dumps(claims).encode())
        signing_input = f"{header}.{body}".encode()
        signature = b64url(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
        return f"{header}.{body}.{signature}"


    def bosh(query, payload):
        return client.succeed(
            f"curl -sSk -X POST -H 'Content-Type: text/xml; charset=utf-8' "
            f"--data-binary \"{payload}\" 'https://server/http-bind{query}'"
        )


    def anonymous_login(query, domain="server"):
        """Opens a BOSH session and tries SASL ANONYMOUS; returns the reply."""
        opened = bosh(
            query,
            f"<body rid='1' to='{domain}' wait='10' hold='1' ver='1.6' "
            "xmlns='http://jabber.org/protocol/httpbind' "
            "xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>",
        )
        sid = re.search(r"sid=['\"]([^'\"]+)['\"]", opened)
        if sid is None:
            return opened  # no session at all (e.g. host-unknown)
        sid = sid.group(1)
        return bosh(
            "",
            f"<body rid='2' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind'>"
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>"
            "</body>",
        )


    class Bosh:
        """A BOSH session of one attendee with a token, through nginx."""

        def __init__(self, token, room):
            self.rid = 100
            self.seen = ""
            opened = self.post(
                f"?room={room}&token={token}",
                "<body rid='{rid}' to='server' wait='2' hold='1' ver='1.6' "
                "xmlns='http://jabber.org/protocol/httpbind' "
                "xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>",
            )
            sid = re.search(r"sid=['\"]([^'\"]+)['\"]", opened)
            assert sid is not None, opened
            self.sid = sid.group(1)
            self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
            self.expect("<success")
            self.post(
                "",
                "<body rid='{rid}' sid='{sid}' to='server' xml:lang='en' xmpp:restart='true' "
                "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>",
            )
            self.send(
                "<iq type='set' id='bind1' xmlns='jabber:client'>"
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
            )
            self.expect("</jid>")

        def post(self, query, body):
            self.rid += 1
            body = body.replace("{rid}", str(self.rid)).replace("{sid}", getattr(self, "sid", ""))
            reply = client.succeed(
                "curl -sS -X POST -H 'Content-Type: text/xml; charset=utf-8' "
                f"--data-binary \"{body}\" 'https://server/http-bind{query}'"
            )
            self.seen += reply
            return reply

        def send(self, stanzas):
            return self.post(
                "",
                "<body rid='{rid}' sid='{sid}' xmlns='http://jabber.org/protocol/httpbind'>"
                + stanzas
                + "</body>",
            )

        def expect(self, marker, polls=15):
            """Polls the session until `marker` has come; returns all seen so far."""
            for _ in range(polls):
                if marker in self.seen:
                    return self.seen
                self.send("")
            raise AssertionError(f"no {marker!r} in {self.seen}")

        def join(self, room):
            """Has jicofo create the room (as the web app does), then enters it."""
            self.send(
                f"<iq type='set' id='conf-{room}' to='focus.server' xmlns='jabber:client'>"
                f"<conference xmlns='http://jitsi.org/protocol/focus' room='{room}@conference.server' "
                "machine-uid='venue-test'/></iq>"
            )
            self.expect(f"id='conf-{room}'")
            self.seen = ""
            self.send(
                f"<presence to='{room}@conference.server/attendee' xmlns='jabber:client'>"
                "<x xmlns='http://jabber.org/protocol/muc'/></presence>"
            )
            for _ in range(15):
                if "type='error'" in self.seen or "status code='110'" in self.seen:
                    return self.seen
                self.send("")
            raise AssertionError(f"no answer to joining {room}: {self.seen}")


    start_all()

    with subtest("all units come up"):
        server.wait_for_unit("venue-jitsi-secrets.service")
        server.wait_for_unit("prosody.service")
        server.wait_for_unit("jicofo.service")
        server.wait_for_unit("jitsi-videobridge2.service")
        server.wait_for_unit("nginx.service")
        bridge.wait_for_unit("jitsi-videobridge2.service")
        bridge.wait_for_unit("nginx.service")

    with subtest("the web app answers with its title"):
        client.wait_for_unit("network.target")
        assert "<title>Jitsi Meet</title>" in client.succeed("curl -sSfkL http://server/")

    with subtest("focus and the videobridge authenticate in prosody"):
        server.wait_until_succeeds(
            "journalctl -b -u prosody -o cat | grep -q 'Authenticated as focus@auth.server'"
        )
        server.wait_until_succeeds(
            "journalctl -b -u prosody -o cat | grep -q 'Authenticated as jvb@auth.server'"
        )
        server.wait_until_succeeds(
            "journalctl -b -u jitsi-videobridge2 -o cat | grep -q 'Performed a successful health check'"
        )

    with subtest("the second videobridge joins the bridge MUC"):
        bridge.wait_until_succeeds(
            "journalctl -b -u jitsi-videobridge2 -o cat | grep -q 'Performed a successful health check'"
        )
        server.wait_until_succeeds(
            "journalctl -b -u jicofo -o cat | grep -q 'jvbbrewery@internal.auth.server/bridge'"
        )

    with subtest("secrets reach prosody at run time only"):
        server.succeed("grep -q 'app_secret = \"test-jwt-secret\"' /run/prosody/prosody.cfg.lua")
        server.succeed("grep -q 'app_secret = \"\\$VENUE_JWT_SECRET\"' /etc/prosody/prosody.cfg.lua")
        server.succeed("grep -q token_verification /etc/prosody/prosody.cfg.lua")

    with subtest("only clients with a signed token get in"):
        reply = anonymous_login("")
        assert "<success" not in reply, reply
        reply = anonymous_login("?room=room1&token=" + token("not-the-secret"))
        assert "<success" not in reply, reply
        reply = anonymous_login("?room=room1&token=" + token(""))
        assert "<success" not in reply, reply
        reply = anonymous_login("?room=room1&token=" + token("test-jwt-secret"))
        assert "<success" in reply, reply

    with subtest("a token opens its own room and no other"):
        attendee = Bosh(token("test-jwt-secret", room="room1"), "room1")
        # jicofo creates both rooms; only the token's room lets the attendee in.
        joined = attendee.join("room1")
        assert "status code='110'" in joined and "type='error'" not in joined, joined
        refused = attendee.join("room2")
        assert "type='error'" in refused and "not-allowed" in refused, refused

    with subtest("no anonymous way around the token: nixpkgs' guest host is off"):
        # A session there has no token, and token_verification would let it
        # into (and jicofo create) any room.
        reply = anonymous_login("", domain="guest.server")
        assert "<success" not in reply, reply
        server.fail("grep -A1 'VirtualHost \"guest.server\"' /etc/prosody/prosody.cfg.lua | grep -q 'enabled = true'")
        server.succeed("grep -A1 'VirtualHost \"guest.server\"' /etc/prosody/prosody.cfg.lua | grep -q 'enabled = false'")

    with subtest("the verifier is appended to nixpkgs' module list of the conference MUC"):
        cfg = server.succeed("cat /etc/prosody/prosody.cfg.lua")
        assert 'modules_enabled:append { "token_verification" }' in cfg, cfg

    with subtest("prosody listens on loopback only: HTTP for nginx, XMPP for jicofo and the bridges' nginx"):
        server.succeed("curl -sf http://127.0.0.1:5280/http-bind")
        pid = server.succeed("systemctl show -p MainPID --value prosody.service").strip()
        listeners = [
            line.split()[3] for line in server.succeed("ss -Htlnp").splitlines() if f"pid={pid}," in line
        ]
        assert any(a.endswith(":5280") for a in listeners), listeners
        assert any(a.endswith(":5222") for a in listeners), listeners
        for address in listeners:
            assert re.match(r"(127\.0\.0\.1|\[::1\]):", address), listeners

    with subtest("health endpoints ask prosody and the bridge"):
        client.succeed("curl -sf http://${nodes.server.networking.primaryIPAddress}/healthz")
        client.succeed("curl -sf http://${nodes.server.networking.primaryIPAddress}/healthz/jitsi")
        client.succeed("curl -sf http://${nodes.bridge.networking.primaryIPAddress}/healthz/jvb")
        server.succeed("systemctl stop prosody.service")
        client.fail("curl -sf http://${nodes.server.networking.primaryIPAddress}/healthz/jitsi")
        server.succeed("systemctl start prosody.service")
        client.wait_until_succeeds("curl -sf http://${nodes.server.networking.primaryIPAddress}/healthz/jitsi")
        bridge.succeed("systemctl stop jitsi-videobridge2.service")
        client.fail("curl -sf http://${nodes.bridge.networking.primaryIPAddress}/healthz/jvb")
        bridge.succeed("systemctl start jitsi-videobridge2.service")
        client.wait_until_succeeds("curl -sf http://${nodes.bridge.networking.primaryIPAddress}/healthz/jvb", timeout=120)

    with subtest("the second bridge checks the main host's certificate"):
        server.wait_until_succeeds(
            "journalctl -b -u jicofo -o cat | grep -q 'jvbbrewery@internal.auth.server/bridge'"
        )
        # nginx on the main host presents a certificate the bridge does not trust.
        server.succeed(
            "install -m 0440 -g nginx ${certs}/untrusted-key.pem /run/venue-tls/key.pem"
            " && install -m 0440 -g nginx ${certs}/untrusted.pem /run/venue-tls/fullchain.pem"
            " && systemctl reload nginx.service"
        )
        bridge.succeed("systemctl restart jitsi-videobridge2.service")
        bridge.wait_until_succeeds(
            "journalctl -b -u nginx -o cat | grep -q 'upstream SSL certificate verify error'"
        )
        # The agent's certificate back: the bridge joins the bridge MUC again.
        seen = "journalctl -b -u jicofo -o cat | grep -c 'jvbbrewery@internal.auth.server/bridge'"
        before = int(server.succeed(seen).strip())
        server.succeed("systemctl restart venue-tls.service && systemctl reload nginx.service")
        bridge.succeed("systemctl restart jitsi-videobridge2.service")
        server.wait_until_succeeds(f"[ $({seen}) -gt {before} ]", timeout=120)
  '';
}
