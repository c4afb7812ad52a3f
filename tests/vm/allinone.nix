# A small event on one host: portal, Jitsi, BigBlueButton and coturn side by
# side, as hosts/allinone declares them. Every role's health endpoint answers
# through nginx on plain HTTP by address, the way the deploy step checks, and
# follows the service behind it.
# BigBlueButton's containers are not started (no registry in a VM test), so
# its endpoint answers 502 from nginx: the proxy is there, the API is not.
{ pkgs, venueModules, portalPackage }:

pkgs.testers.runNixOSTest {
  name = "venue-allinone";

  nodes = {
    allinone = { config, ... }: {
      imports = [
        venueModules
        (import ./secrets.nix {
          portal-session = "test-portal-session-key-0123456789";
          bbb-secret = "test-bbb-secret";
          jwt-secret = "test-jwt-secret";
          turn-secret = "test-turn-secret";
        })
      ];
      virtualisation.memorySize = 4096;
      services.venue = {
        domain = "test";
        turn.host = "turn";
        portal = {
          enable = true;
          package = portalPackage;
          hostName = "portal";
          eventFile = "${../../hosts/nixcon-2020}/event.toml";
        };
        jitsi = {
          enable = true;
          hostName = "meet";
          publicAddress = config.networking.primaryIPAddress;
          localAddress = config.networking.primaryIPAddress;
          publicAddress6 = config.networking.primaryIPv6Address;
        };
        bbb = {
          enable = true;
          hostName = "bbb";
          externalIPv4 = config.networking.primaryIPAddress;
          autoStart = false;
        };
        coturn = {
          enable = true;
          hostName = "turn";
        };
      };
    };

    client = { pkgs, ... }: {
      environment.systemPackages = [ pkgs.curl ];
    };
  };

  testScript = { nodes, ... }:
    let
      ip = nodes.allinone.networking.primaryIPAddress;
      ip6 = nodes.allinone.networking.primaryIPv6Address;
    in
    ''
      def status(path):
          return client.succeed(f"curl -s -o /dev/null -w '%{{http_code}}' http://${ip}{path}")


      start_all()

      with subtest("every role's units come up"):
          for unit in ["venue-portal", "prosody", "jicofo", "jitsi-videobridge2", "coturn", "nginx"]:
              allinone.wait_for_unit(f"{unit}.service")
          allinone.wait_for_open_port(8087)
          allinone.wait_for_open_port(3478)
          client.wait_for_unit("network.target")

      with subtest("the portal is wired to the roles on its host"):
          config = allinone.succeed(
              "systemctl cat venue-portal.service | grep -o '/nix/store/[^ ]*venue-portal.toml' | head -1"
          ).strip()
          allinone.succeed(f"grep -q 'domain = \"meet\"' {config}")
          allinone.succeed(f"grep -q 'https://bbb/bigbluebutton/api' {config}")
          allinone.succeed(f"grep -q 'turns:turn:5349' {config}")

      with subtest("health endpoints answer"):
          assert status("/healthz") == "200"  # the portal's own /healthz
          for role in ["portal", "jitsi", "coturn"]:
              assert status(f"/healthz/{role}") == "200", role
          assert status("/healthz/bbb") == "502"

      with subtest("health endpoints ask the services, not nginx"):
          allinone.succeed("systemctl stop prosody.service coturn.service")
          assert status("/healthz/jitsi") == "502"
          assert status("/healthz/coturn") == "503"
          allinone.succeed("systemctl start prosody.service coturn.service")
          client.wait_until_succeeds("[ $(curl -s -o /dev/null -w '%{http_code}' http://${ip}/healthz/jitsi) = 200 ]")
          client.wait_until_succeeds("[ $(curl -s -o /dev/null -w '%{http_code}' http://${ip}/healthz/coturn) = 200 ]")

      with subtest("room sizes and bridge load: for the portal beside them, not for everyone"):
          for path in ["/room-size?room=x&domain=meet", "/colibri/stats"]:
              url = f"https://meet{path}"
              # The public name may give either address; the portal's requests
              # then come from that address of the host.
              for address in ["${ip}", "[${ip6}]"]:
                  fetch = f"curl -sk -o /dev/null -w '%{{http_code}}' --resolve meet:443:{address} '{url}'"
                  assert client.succeed(fetch) == "403", (path, address)
                  assert allinone.succeed(fetch) != "403", (path, address)

      with subtest("all certificates share the ACME webroot's group"):
          # TURN's certificate used to chgrp it to turnserver, locking nginx
          # out of the HTTP-01 challenge.
          for cert in ["portal", "meet", "bbb", "turn"]:
              allinone.wait_for_unit(f"acme-{cert}.service")
          group = allinone.succeed("stat -c %G /var/lib/acme/acme-challenge/.well-known/acme-challenge").strip()
          assert group == "nginx", group
    '';
}
