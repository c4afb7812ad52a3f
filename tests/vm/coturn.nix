# coturn with TURN REST credentials: a client gets an allocation with
# credentials derived from the shared secret, and is refused with a wrong
# secret or an expired username. coturn refuses to start with an empty
# secret and comes back when the secret is written again (the secrets' path
# unit), TCP relays are off, and /healthz/coturn follows coturn itself. The ports follow services.venue.turn (set
# to non-default ones here, so the wiring is what is tested), TLS comes from
# the host's own ACME certificate (nixpkgs' self-signed one in a VM) handed
# over as a systemd credential, and the shared ACME webroot stays nginx's.
# Model: nixpkgs' nixos/tests/coturn.nix.
{ pkgs, venueModules }:

pkgs.testers.runNixOSTest {
  name = "venue-coturn";

  nodes = {
    turn = {
      imports = [ venueModules (import ./secrets.nix { turn-secret = "test-turn-secret"; }) ];
      services.venue = {
        domain = "test";
        turn = {
          port = 3480;
          tlsPort = 5350;
        };
        coturn = {
          enable = true;
          hostName = "turn";
          minPort = 50000;
          maxPort = 50100;
          # Relay addresses in the test network are private ones.
          deniedPeerRanges = [ ];
        };
      };
    };

    client = { pkgs, ... }: {
      environment.systemPackages = [ pkgs.coturn pkgs.curl pkgs.openssl ];
    };
  };

  testScript = { nodes, ... }:
    let
      turnIP = nodes.turn.networking.primaryIPAddress;
    in
    ''
      import base64
      import hashlib
      import hmac
      import re
      import time


      def credentials(secret, expires_in=3600, user="attendee"):
          """TURN REST credentials, as the portal and the agent make them."""
          username = f"{int(time.time()) + expires_in}:{user}"
          mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
          return username, base64.b64encode(mac).decode()


      def allocate(username, password):
          # -y: talk to a second allocation of our own, so no peer is needed.
          return (
              f"turnutils_uclient -y -c -n 1 -X -p 3480 -u '{username}' -w '{password}' ${turnIP}"
          )


      start_all()
      turn.wait_for_unit("coturn.service")
      turn.wait_for_open_port(3480)
      client.wait_for_unit("multi-user.target")

      with subtest("the secret reaches coturn's runtime config, not the store"):
          turn.succeed("grep -q 'static-auth-secret=test-turn-secret' /run/coturn/turnserver.cfg")
          # The store file preStart copies from: the placeholder, never the secret.
          found = re.search(r"/nix/store/\S+turnserver\.conf", ${builtins.toJSON nodes.turn.systemd.services.coturn.preStart})
          assert found is not None
          conf = found.group(0)
          turn.succeed(f"grep -q 'static-auth-secret=#static-auth-secret#' {conf}")
          turn.fail(f"grep -q test-turn-secret {conf}")
          turn.succeed(f"grep -qx 'listening-port=3480' {conf}")
          turn.succeed(f"grep -qx 'tls-listening-port=5350' {conf}")

      with subtest("credentials from the shared secret get an allocation"):
          client.succeed(allocate(*credentials("test-turn-secret")))

      with subtest("a wrong secret is refused"):
          client.fail(allocate(*credentials("not-the-secret")))

      with subtest("expired credentials are refused"):
          client.fail(allocate(*credentials("test-turn-secret", expires_in=-60)))

      with subtest("TLS listener with the host's certificate, and the firewall"):
          turn.wait_for_open_port(5350)
          served = client.succeed(
              "openssl s_client -connect ${turnIP}:5350 -servername turn </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
          )
          own = turn.succeed("openssl x509 -noout -fingerprint -sha256 -in /var/lib/acme/turn/cert.pem")
          assert served.strip() == own.strip(), (served, own)
          rules = turn.succeed("iptables -S nixos-fw")
          for port in ["3480", "5350", "50000:50100"]:
              assert f"dport {port}" in rules, (port, rules)
          assert "dport 3478 " not in rules, rules

      with subtest("the ACME webroot stays readable for nginx"):
          turn.wait_for_unit("acme-turn.service")
          group = turn.succeed("stat -c %G /var/lib/acme/acme-challenge/.well-known/acme-challenge").strip()
          assert group == "nginx", group

      with subtest("no TCP relays"):
          turn.succeed("grep -qx 'no-tcp-relay' /run/coturn/turnserver.cfg")

      with subtest("health endpoint asks coturn"):
          client.succeed("curl -sf http://${turnIP}/healthz")
          client.succeed("curl -sf http://${turnIP}/healthz/coturn")
          turn.succeed("systemctl stop coturn.service")
          status = client.succeed("curl -s -o /dev/null -w '%{http_code}' http://${turnIP}/healthz/coturn")
          assert status == "503", status
          turn.succeed("systemctl start coturn.service")
          turn.wait_for_open_port(3480)
          client.wait_until_succeeds("curl -sf http://${turnIP}/healthz/coturn")

      with subtest("an empty secret: coturn refuses to start, and comes back with the secret"):
          pid = turn.succeed("systemctl show -p MainPID --value coturn.service").strip()
          # As the agent writes: beside the name, then renamed into place.
          turn.succeed(
              "cd /var/lib/venue/secrets && : > .turn-secret.tmp && chmod 0400 .turn-secret.tmp"
              " && mv -f .turn-secret.tmp turn-secret"
          )
          turn.wait_until_succeeds("journalctl -b -u coturn -o cat | grep -q 'turn-secret is missing or empty'")
          turn.wait_until_succeeds("systemctl is-failed coturn.service")
          client.fail(allocate(*credentials("")))
          turn.succeed(
              "cd /var/lib/venue/secrets && printf %s test-turn-secret > .turn-secret.tmp"
              " && chmod 0400 .turn-secret.tmp && mv -f .turn-secret.tmp turn-secret"
          )
          turn.wait_until_succeeds("systemctl is-active coturn.service")
          assert turn.succeed("systemctl show -p MainPID --value coturn.service").strip() != pid
          turn.wait_for_open_port(3480)
          client.wait_until_succeeds(allocate(*credentials("test-turn-secret")))
    '';
}
