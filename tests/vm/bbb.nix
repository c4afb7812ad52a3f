# BigBlueButton from the bigbluebutton/docker images. A VM test has no
# registry to pull from, and no public source gives the images' digests to
# fetch them as fixed-output derivations, so this test does not start the
# containers: it checks what the module generates, by reading the start
# script each podman unit really runs (oci-containers puts image, network,
# addresses and env files there, not in the unit file), and what the host
# itself runs (the podman network, the secrets in /run, the data volumes,
# the firewall, nginx in front of the API port), that nothing starts without
# the agent's secrets and that their arrival restarts what reads them, the
# default slide, the fixed ids of the images' users, and upstream's periodic
# jobs as timers.
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

      with subtest("the default slide is mounted where upstream's nginx serves it"):
          pdf = re.search(r"(/nix/store/[^\s:]+):/www/default\.pdf:ro", scripts["bbb-nginx"])
          assert pdf, scripts["bbb-nginx"]
          assert bbb.succeed(f"head -c 5 {pdf.group(1)}") == "%PDF-"

      with subtest("the images' uids and gids are reserved, not handed to other system users"):
          assert bbb.succeed("getent passwd 998").split(":")[0] == "bbb"
          assert bbb.succeed("getent passwd 999").split(":")[0] == "bbb-redis"
          assert bbb.succeed("getent group 998").split(":")[0] == "bbb"
          assert bbb.succeed("getent group 999").split(":")[0] == "bbb-redis"

      with subtest("secrets reach environment files in /run, not the scripts"):
          bbb.succeed("systemctl start venue-bbb-secrets.service")
          bbb.succeed("grep -qx SHARED_SECRET=test-bbb-secret /run/venue-bbb/shared.env")
          bbb.succeed("grep -qx TURN_SECRET=test-turn-secret /run/venue-bbb/shared.env")
          bbb.succeed("test \"$(stat -c %a /run/venue-bbb/shared.env)\" = 600")
          bbb.succeed("grep -q '^POSTGRES_PASSWORD=.' /run/venue-bbb/postgres.env")
          assert "--env-file /run/venue-bbb/shared.env" in scripts["bbb-web"], scripts["bbb-web"]
          for name, script in scripts.items():
              assert "test-bbb-secret" not in script and "test-turn-secret" not in script, name

      with subtest("no secret, no start: missing or empty files are refused, naming the file"):
          for name in containers:
              requires = bbb.succeed(f"systemctl show -P Requires podman-{name}.service")
              assert "venue-bbb-secrets.service" in requires, (name, requires)
          bbb.succeed("systemctl stop venue-secrets-changed.path")
          bbb.succeed("rm /var/lib/venue/secrets/bbb-secret")
          bbb.fail("systemctl restart venue-bbb-secrets.service")
          bbb.succeed("journalctl -u venue-bbb-secrets.service | grep -q '/var/lib/venue/secrets/bbb-secret is missing or empty'")
          bbb.succeed("install -m 0400 /dev/null /var/lib/venue/secrets/bbb-secret")
          bbb.fail("systemctl restart venue-bbb-secrets.service")
          # A line break alone is not a secret either.
          bbb.succeed("printf '\\n' > /tmp/s && install -m 0400 /tmp/s /var/lib/venue/secrets/bbb-secret")
          bbb.fail("systemctl restart venue-bbb-secrets.service")
          bbb.succeed("journalctl -u venue-bbb-secrets.service | grep -q 'the shared secret is empty'")
          bbb.succeed("rm /var/lib/venue/secrets/turn-secret")
          bbb.succeed("printf x > /tmp/s && install -m 0400 /tmp/s /var/lib/venue/secrets/bbb-secret")
          bbb.fail("systemctl restart venue-bbb-secrets.service")
          bbb.succeed("journalctl -u venue-bbb-secrets.service | grep -q '/var/lib/venue/secrets/turn-secret is missing or empty'")

      with subtest("the agent's upload restarts the unit that renders the environment files"):
          bbb.succeed("systemctl start venue-secrets-changed.path")
          # As the agent writes: beside the name, then renamed into place.
          bbb.succeed(
              "printf test-turn-secret > /var/lib/venue/secrets/.turn && chmod 0400 /var/lib/venue/secrets/.turn"
              " && mv /var/lib/venue/secrets/.turn /var/lib/venue/secrets/turn-secret",
              "printf test-bbb-secret-2 > /var/lib/venue/secrets/.bbb && chmod 0400 /var/lib/venue/secrets/.bbb"
              " && mv /var/lib/venue/secrets/.bbb /var/lib/venue/secrets/bbb-secret",
          )
          bbb.wait_until_succeeds("grep -qx SHARED_SECRET=test-bbb-secret-2 /run/venue-bbb/shared.env", timeout=60)
          bbb.succeed("systemctl is-active venue-bbb-secrets.service")
          # The containers do not start at boot here: new secrets do not start them either.
          bbb.fail("systemctl is-active podman-bbb-web.service")

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
          assert bbb.succeed(f"stat -c '%u %U %a' {data}").strip() == "998 bbb 755"

      with subtest("upstream's periodic jobs run as timers"):
          for job in ["venue-bbb-resync-freeswitch", "venue-bbb-clean-presentations"]:
              bbb.succeed(f"systemctl is-active {job}.timer")
          base = "${cfg.stateDir}/bigbluebutton"
          bbb.succeed(
              f"mkdir -p {base}/old-meeting-1600000000000 {base}/new-meeting-1700000000000 {base}/recording",
              f"touch -d '7 days ago' {base}/old-meeting-1600000000000 {base}/recording",
          )
          bbb.succeed("systemctl start venue-bbb-clean-presentations.service")
          bbb.fail(f"test -e {base}/old-meeting-1600000000000")
          bbb.succeed(f"test -d {base}/new-meeting-1700000000000 && test -d {base}/recording")
          # FreeSWITCH is not running here: the job says so and succeeds.
          bbb.succeed("systemctl start venue-bbb-resync-freeswitch.service")
          bbb.succeed("journalctl -u venue-bbb-resync-freeswitch.service | grep -q 'FreeSWITCH is not running'")
          unit = bbb.succeed("systemctl cat venue-bbb-resync-freeswitch.service")
          start = re.search(r"ExecStart=(\S+)", unit).group(1)
          job = bbb.succeed(f"cat {start}")
          assert "fsctl sync_clock_when_idle" in job and "10.7.7.10" in job, job
          # The ESL password is read inside the container, never written into the job.
          esl = bbb.succeed("cat ${cfg.stateDir}/internal-secrets/esl").strip()
          assert esl and esl not in job and esl not in unit

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
          # Health is BBB's API, not nginx's own answer.
          code = bbb.succeed("curl -s -o /dev/null -w '%{http_code}' http://localhost/healthz")
          assert code == "502", code
    '';
}
