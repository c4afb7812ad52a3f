# BigBlueButton from the bigbluebutton/docker images. A VM test has no
# registry to pull from, and no public source gives the images' digests to
# fetch them as fixed-output derivations, so this test does not start the
# containers: it checks what the module generates instead (one unit per
# container with its image, address and environment files; the podman
# network; the secrets in /run and not in the store; firewall; nginx in
# front of the API port).
{ pkgs, venueModules }:

pkgs.testers.runNixOSTest {
  name = "venue-bbb";

  nodes.bbb = { config, ... }: {
    imports = [
      venueModules
      (import ./secrets.nix {
        bbb-secret = "test-bbb-secret";
        turn-secret = "test-turn-secret";
      })
    ];
    virtualisation.memorySize = 2048;
    services.venue = {
      domain = "test";
      turn.host = "turn.test";
      bbb = {
        enable = true;
        hostName = "bbb";
        externalIPv4 = config.networking.primaryIPAddress;
        autoStart = false;
      };
    };
  };

  testScript = { nodes, ... }:
    let
      cfg = nodes.bbb.services.venue.bbb;
      containers = builtins.attrNames nodes.bbb.virtualisation.oci-containers.containers;
    in
    ''
      import json

      containers = json.loads('${builtins.toJSON containers}')
      images = json.loads('${builtins.toJSON cfg.images}')

      bbb.wait_for_unit("multi-user.target")

      with subtest("one unit per upstream container, with its image, not started"):
          assert "bbb-web" in containers and "freeswitch" in containers, containers
          for name in containers:
              unit = bbb.succeed(f"systemctl cat podman-{name}.service")
              assert images[name] in unit, (name, images[name])
              bbb.fail(f"systemctl is-active podman-{name}.service")

      with subtest("bridge addresses and host networking as upstream"):
          assert "--ip=10.7.7.2" in bbb.succeed("systemctl cat podman-bbb-web.service")
          for name in ["nginx", "webrtc-sfu"]:
              assert "--network=host" in bbb.succeed(f"systemctl cat podman-{name}.service")

      with subtest("the podman network"):
          bbb.succeed("systemctl start venue-bbb-network.service")
          bbb.succeed("podman network inspect bbb-net | grep -q 10.7.7.0/24")

      with subtest("secrets reach environment files in /run, not the store"):
          bbb.succeed("systemctl start venue-bbb-secrets.service")
          bbb.succeed("grep -qx SHARED_SECRET=test-bbb-secret /run/venue-bbb/shared.env")
          bbb.succeed("grep -qx TURN_EXT_SECRET=test-turn-secret /run/venue-bbb/shared.env")
          bbb.succeed("test \"$(stat -c %a /run/venue-bbb/shared.env)\" = 600")
          bbb.succeed("grep -q '^POSTGRES_PASSWORD=.' /run/venue-bbb/postgres.env")
          web = bbb.succeed("systemctl cat podman-bbb-web.service")
          assert "/run/venue-bbb/shared.env" in web
          assert "test-bbb-secret" not in web
          assert "turns:turn.test:5349" in web

      with subtest("firewall: web and the WebRTC media range"):
          rules = bbb.succeed("iptables -S nixos-fw")
          assert "--dport 443" in rules, rules
          assert "--dport 16384:32768" in rules, rules

      with subtest("nginx proxies the API to the project's nginx port"):
          bbb.wait_for_unit("nginx.service")
          code = bbb.succeed(
              "curl -sk -o /dev/null -w '%{http_code}' https://bbb/bigbluebutton/api"
          )
          assert code == "502", code  # nothing listens on ${toString cfg.apiPort}: no images
          code = bbb.succeed("curl -s -o /dev/null -w '%{http_code}' http://localhost/healthz")
          assert code == "502", code
    '';
}
