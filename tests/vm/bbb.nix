# BigBlueButton from the bigbluebutton/docker images. A VM test has no
# registry to pull from, and no public source gives the images' digests to
# fetch them as fixed-output derivations, so this test does not start the
# containers: it checks what the module generates, by reading the start
# script each podman unit really runs (oci-containers puts image, network,
# addresses and env files there, not in the unit file), and what the host
# itself runs (the podman network, the secrets in /run, the data volumes,
# the firewall, nginx in front of the API port).
{ pkgs, venueModules }:

let
  pinnedWeb = "registry.example.org/bbb-web@sha256:${builtins.concatStringsSep "" (builtins.genList (_: "0") 64)}";
in
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
        # One image overridden: the others must keep their defaults.
        images.bbb-web = pinnedWeb;
      };
    };
  };

  testScript = { nodes, ... }:
    let
      cfg = nodes.bbb.services.venue.bbb;
      containers = builtins.attrNames nodes.bbb.virtualisation.oci-containers.containers;
      images = builtins.mapAttrs (_: c: c.image) nodes.bbb.virtualisation.oci-containers.containers;
    in
    ''
      import json
      import re

      containers = json.loads('${builtins.toJSON containers}')
      images = json.loads('${builtins.toJSON images}')


      def start_script(name):
          """The script podman-<name>.service runs, read from the unit on the VM."""
          exec_start = bbb.succeed(f"systemctl show -P ExecStart podman-{name}.service")
          path = re.search(r"path=(\S+)", exec_start).group(1)
          return bbb.succeed(f"cat {path}")


      bbb.wait_for_unit("multi-user.target")
      scripts = {name: start_script(name) for name in containers}

      with subtest("one unit per upstream container, with its image, not started"):
          assert "bbb-web" in containers and "freeswitch" in containers, containers
          for name in containers:
              assert images[name] in scripts[name], (name, images[name])
              bbb.fail(f"systemctl is-active podman-{name}.service")

      with subtest("one overridden image keeps the other defaults"):
          assert images["bbb-web"] == "${pinnedWeb}", images["bbb-web"]
          assert "${pinnedWeb}" in scripts["bbb-web"]
          assert "alangecker/bbb-docker-freeswitch:" in scripts["freeswitch"], scripts["freeswitch"]
          assert "collabora/code:latest" not in scripts["collabora"], scripts["collabora"]

      with subtest("bridge addresses and host networking as upstream"):
          assert "--ip=10.7.7.2" in scripts["bbb-web"], scripts["bbb-web"]
          assert "--network=bbb-net" in scripts["bbb-web"], scripts["bbb-web"]
          for name in ["bbb-nginx", "webrtc-sfu"]:
              assert "--network=host" in scripts[name], (name, scripts[name])

      with subtest("upstream's nginx finds greenlight, and not in NixOS nginx's /run/nginx"):
          assert "--add-host=greenlight:10.7.7.21" in scripts["bbb-nginx"], scripts["bbb-nginx"]
          assert "nginx" not in containers, containers
          assert "--cidfile=/run/bbb-nginx/ctr-id" in scripts["bbb-nginx"], scripts["bbb-nginx"]
          runtime = bbb.succeed("systemctl show -P RuntimeDirectory podman-bbb-nginx.service").strip()
          assert runtime == "bbb-nginx", runtime

      with subtest("the podman network"):
          bbb.succeed("systemctl start venue-bbb-network.service")
          bbb.succeed("podman network inspect bbb-net | grep -q 10.7.7.0/24")

      with subtest("secrets reach environment files in /run, not the scripts"):
          bbb.succeed("systemctl start venue-bbb-secrets.service")
          bbb.succeed("grep -qx SHARED_SECRET=test-bbb-secret /run/venue-bbb/shared.env")
          bbb.succeed("grep -qx TURN_SECRET=test-turn-secret /run/venue-bbb/shared.env")
          bbb.succeed("test \"$(stat -c %a /run/venue-bbb/shared.env)\" = 600")
          bbb.succeed("grep -q '^POSTGRES_PASSWORD=.' /run/venue-bbb/postgres.env")
          assert "--env-file /run/venue-bbb/shared.env" in scripts["bbb-web"], scripts["bbb-web"]
          for name, script in scripts.items():
              assert "test-bbb-secret" not in script and "test-turn-secret" not in script, name

      with subtest("BBB hands out the venue's TURN server, not one on itself"):
          template = re.search(r"(/nix/store/\S+-turn-stun-servers\.xml\.tmpl):/etc/bigbluebutton/turn-stun-servers\.xml\.tmpl", scripts["bbb-web"])
          assert template, scripts["bbb-web"]
          xml = bbb.succeed(f"cat {template.group(1)}")
          assert 'value="turn:turn.test:3478"' in xml, xml
          assert 'value="turns:turn.test:5349?transport=tcp"' in xml, xml
          assert 'value="stun:turn.test:3478"' in xml, xml
          assert "turn:bbb:" not in xml, xml
          assert "{{ .Env.TURN_SECRET }}" in xml and "test-turn-secret" not in xml, xml

      with subtest("data volumes: slides readable by the nginx container, owners kept"):
          data = "${cfg.stateDir}/bigbluebutton"
          assert bbb.succeed(f"stat -c %a {data}").strip() == "755"
          # bbb-web chowns its data to uid 998 at start; a switch must not undo it.
          bbb.succeed(f"chown 998:998 {data}")
          bbb.succeed("systemd-tmpfiles --create")
          bbb.succeed("systemctl restart venue-bbb-secrets.service")
          assert bbb.succeed(f"stat -c '%u %a' {data}").strip() == "998 755"

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
