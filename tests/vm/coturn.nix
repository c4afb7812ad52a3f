# coturn with TURN REST credentials: a client gets an allocation with
# credentials derived from the shared secret, and is refused with a wrong
# secret or an expired username. Model: nixpkgs' nixos/tests/coturn.nix.
{ pkgs, venueModules }:

pkgs.testers.runNixOSTest {
  name = "venue-coturn";

  nodes = {
    turn = {
      imports = [ venueModules (import ./secrets.nix { turn-secret = "test-turn-secret"; }) ];
      services.venue = {
        domain = "test";
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
      environment.systemPackages = [ pkgs.coturn pkgs.curl ];
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
      import time


      def credentials(secret, expires_in=3600, user="attendee"):
          """TURN REST credentials, as the portal and the agent make them."""
          username = f"{int(time.time()) + expires_in}:{user}"
          mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
          return username, base64.b64encode(mac).decode()


      def allocate(username, password):
          # -y: talk to a second allocation of our own, so no peer is needed.
          return (
              f"turnutils_uclient -y -c -n 1 -X -u '{username}' -w '{password}' ${turnIP}"
          )


      start_all()
      turn.wait_for_unit("coturn.service")
      turn.wait_for_open_port(3478)
      client.wait_for_unit("multi-user.target")

      with subtest("the secret reaches coturn's runtime config, not the store"):
          turn.succeed("grep -q 'static-auth-secret=test-turn-secret' /run/coturn/turnserver.cfg")
          turn.fail("systemctl cat coturn.service | grep -q test-turn-secret")

      with subtest("credentials from the shared secret get an allocation"):
          client.succeed(allocate(*credentials("test-turn-secret")))

      with subtest("a wrong secret is refused"):
          client.fail(allocate(*credentials("not-the-secret")))

      with subtest("expired credentials are refused"):
          client.fail(allocate(*credentials("test-turn-secret", expires_in=-60)))

      with subtest("TLS listener and firewall"):
          turn.wait_for_open_port(5349)
          turn.succeed("iptables -S nixos-fw | grep -q 'dport 3478'")
          turn.succeed("iptables -S nixos-fw | grep -q 'dport 50000:50100'")

      with subtest("health endpoint"):
          client.succeed("curl -sf http://${turnIP}/healthz")
          client.succeed("curl -sf http://${turnIP}/healthz/coturn")
    '';
}
