# The main Jitsi host and an extra videobridge host: every unit comes up,
# the web app answers with its title, focus and the videobridge log in to
# prosody, the second bridge joins the bridge MUC, and prosody admits only
# clients with a token signed with the venue's JWT secret.
# Model: nixpkgs' nixos/tests/jitsi-meet.nix.
{ pkgs, venueModules }:

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
        jitsi = {
          enable = true;
          hostName = "server";
          publicAddress = config.networking.primaryIPAddress;
          localAddress = config.networking.primaryIPAddress;
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
        reply = anonymous_login("?room=room1&token=" + token("test-jwt-secret"))
        assert "<success" in reply, reply

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

    with subtest("health endpoints"):
        client.succeed("curl -sf http://${nodes.server.networking.primaryIPAddress}/healthz")
        client.succeed("curl -sf http://${nodes.bridge.networking.primaryIPAddress}/healthz/jvb")
  '';
}
