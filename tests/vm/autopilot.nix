# services.venue.autopilot: the unit starts with a token file made at boot
# (so it exists in no store path), the agent gets it as HCLOUD_TOKEN and
# nowhere else (not in the unit, not in `systemctl show`, not on a command
# line, not in the unit's closure), and it refuses to start with an empty
# or missing token. The agent here is a stand-in that records what it was
# given (a hash of the token, its arguments) and waits: the real one would
# call the Hetzner API, which a VM test cannot reach.
{ pkgs, venueModules }:

let
  stateDir = "/var/lib/venue-autopilot";

  agent = pkgs.writeShellScriptBin "venue" ''
    set -eu
    if [ "$1" != autopilot ] || [ "$3" != --state ]; then
      echo "unexpected arguments: $*" >&2
      exit 2
    fi
    if [ -z "''${HCLOUD_TOKEN:-}" ]; then
      echo "no HCLOUD_TOKEN" >&2
      exit 1
    fi
    printf '%s\n' "$@" > "$4/args"
    printf %s "$HCLOUD_TOKEN" | ${pkgs.coreutils}/bin/sha256sum | ${pkgs.coreutils}/bin/cut -d' ' -f1 > "$4/token.sha256"
    exec ${pkgs.coreutils}/bin/sleep infinity
  '';

  event = pkgs.writeTextDir "event.toml" ''
    id = "vm"
    name = "VM"
    timezone = "UTC"
    domain = "vm.example.org"
    attendees = 10
    [[day]]
    date = "2026-05-01"
    open = "09:00"
    close = "17:00"
    [[room]]
    name = "Main"
    kind = "session"
    peak = 10
  '';
in
pkgs.testers.runNixOSTest {
  name = "venue-autopilot";

  nodes.machine = {
    imports = [ venueModules ];

    # The organiser's token, made at boot: a fresh random value in /run.
    systemd.services.test-hcloud-token = {
      wantedBy = [ "multi-user.target" ];
      requiredBy = [ "venue-autopilot.service" ];
      before = [ "venue-autopilot.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      script = ''
        install -d -m 0700 /run/venue-test
        umask 077
        head -c 24 /dev/urandom | base64 | tr -d '\n' > /run/venue-test/hcloud-token
      '';
    };

    services.venue.autopilot = {
      enable = true;
      package = agent;
      eventFile = "${event}/event.toml";
      tokenFile = "/run/venue-test/hcloud-token";
      interval = 30;
    };
  };

  testScript = ''
    import shlex

    def sha(path):
        return machine.succeed(f"sha256sum {path} | cut -d' ' -f1").strip()

    machine.wait_for_unit("venue-autopilot.service")
    machine.wait_for_file("${stateDir}/token.sha256")

    with subtest("the agent gets the token from the credential"):
        assert machine.succeed("cat ${stateDir}/token.sha256").strip() == sha("/run/venue-test/hcloud-token")
        args = machine.succeed("cat ${stateDir}/args").split("\n")
        assert args[:2] == ["autopilot", "${event}/event.toml"], args
        assert args[2:6] == ["--state", "${stateDir}", "--interval", "30"], args
        # DynamicUser keeps the state under /var/lib/private, private to it.
        machine.succeed("test \"$(stat -c %a /var/lib/private/venue-autopilot)\" = 700")

    token = machine.succeed("cat /run/venue-test/hcloud-token").strip()
    assert len(token) >= 32, token
    q = shlex.quote(token)

    with subtest("the token is in the agent's environment only"):
        pid = machine.succeed("systemctl show -P MainPID venue-autopilot.service").strip()
        assert pid != "0"
        machine.succeed(f"tr '\\0' '\\n' < /proc/{pid}/environ | grep -qxF HCLOUD_TOKEN={q}")
        machine.fail(f"tr '\\0' ' ' < /proc/{pid}/cmdline | grep -qF {q}")
        machine.fail(f"systemctl show venue-autopilot.service | grep -qF {q}")
        machine.fail(f"systemctl cat venue-autopilot.service | grep -qF {q}")
        # Not in any store path the unit refers to (its start script, the agent, the event).
        unit = machine.succeed("readlink -f /etc/systemd/system/venue-autopilot.service | cut -d/ -f1-4").strip()
        hits = machine.succeed(f"nix-store -qR {unit} | xargs grep -rlF {q} || true").strip()
        assert hits == "", hits
        machine.succeed("systemctl show -P LoadCredential venue-autopilot.service | grep -qF hcloud-token:/run/venue-test/hcloud-token")

    with subtest("an empty token is refused"):
        machine.succeed("rm ${stateDir}/token.sha256")
        machine.succeed(": > /run/venue-test/hcloud-token")
        machine.succeed("systemctl restart venue-autopilot.service")
        machine.wait_until_succeeds("journalctl -u venue-autopilot.service | grep -q 'token (/run/venue-test/hcloud-token) is empty: refusing to start'")
        machine.fail("test -e ${stateDir}/token.sha256")
        # Only white space is no token either.
        machine.succeed("printf '  \\n' > /run/venue-test/hcloud-token")
        since = machine.succeed("date +%s").strip()
        machine.sleep(1)
        machine.succeed("systemctl restart venue-autopilot.service")
        machine.wait_until_succeeds(f"journalctl --since @{since} -u venue-autopilot.service | grep -q 'token (/run/venue-test/hcloud-token) is empty: refusing to start'")
        machine.fail("test -e ${stateDir}/token.sha256")

    with subtest("a missing token file is refused"):
        machine.succeed("rm /run/venue-test/hcloud-token")
        machine.succeed("systemctl restart venue-autopilot.service")
        # systemd cannot load the credential: the start ends with 243/CREDENTIALS.
        machine.wait_until_succeeds("test \"$(systemctl show -P ExecMainStatus venue-autopilot.service)\" = 243")
        machine.fail("test -e ${stateDir}/token.sha256")

    with subtest("a new token is read at the next start"):
        machine.succeed("head -c 24 /dev/urandom | base64 | tr -d '\\n' > /run/venue-test/hcloud-token")
        machine.succeed("systemctl restart venue-autopilot.service")
        machine.wait_for_file("${stateDir}/token.sha256")
        assert machine.succeed("cat ${stateDir}/token.sha256").strip() == sha("/run/venue-test/hcloud-token")
  '';
}
