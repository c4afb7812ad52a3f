# `venue autopilot` on a long-lived host: keeps the event's cloud servers at
# what the schedule and the load need, until the event is over. Its state
# directory (deploy key, pinned host keys, fleet.json, the journal and the
# measured load) is the unit's StateDirectory; the Hetzner API token is a
# systemd credential copied from a file outside the store at start, and
# reaches the agent as HCLOUD_TOKEN (as the hcloud CLI reads it) only in the
# environment of the process the start script execs: it is in no unit file,
# no `Environment=` (systemctl show) and no command line.
#
# Read against nixpkgs:
# - nixos/lib/systemd-unit-options.nix @ 01f31c2ee7d0: `path` (bin and sbin
#   of each package on PATH), `environment` (becomes Environment=, visible
#   in `systemctl show`: nothing secret goes there), `serviceConfig`,
#   `startLimitIntervalSec`/`startLimitBurst`.
# - nixos/modules/services/networking/cloudflare-dyndns.nix @ 01f31c2ee7d0:
#   an API-token client as a DynamicUser service with a StateDirectory (it
#   reads its token through EnvironmentFile, which this module avoids: the
#   token would be in the unit's environment).
# - The hardening set follows this repository's portal module
#   (modules/portal.nix), less what the agent needs: it runs nix-build and
#   `nix copy` (the nix daemon's socket, AF_UNIX; Nix raises its stack
#   limit, so @resources stays allowed) and ssh.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.venue.autopilot;
  unit = "venue-autopilot";

  # Reads the credential into HCLOUD_TOKEN with the shell's own `read`
  # (no process gets it as an argument) and execs the agent with it.
  start = pkgs.writeShellScript "${unit}-start" ''
    set -eu
    token_file="$CREDENTIALS_DIRECTORY/hcloud-token"
    IFS= read -r HCLOUD_TOKEN < "$token_file" || true
    # As the hcloud CLI: the first line, without surrounding white space.
    HCLOUD_TOKEN="''${HCLOUD_TOKEN#"''${HCLOUD_TOKEN%%[![:space:]]*}"}"
    HCLOUD_TOKEN="''${HCLOUD_TOKEN%"''${HCLOUD_TOKEN##*[![:space:]]}"}"
    if [ -z "$HCLOUD_TOKEN" ]; then
      echo "${unit}: the Hetzner API token (${cfg.tokenFile}) is empty: refusing to start" >&2
      exit 1
    fi
    export HCLOUD_TOKEN
    exec ${lib.getExe' cfg.package "venue"} autopilot ${lib.escapeShellArg "${cfg.eventFile}"} \
      --state "$STATE_DIRECTORY" --interval ${toString cfg.interval}
  '';
in
{
  options.services.venue.autopilot = with lib.types; {
    enable = lib.mkEnableOption "`venue autopilot`, which rents and releases the event's cloud servers as the schedule and the load need";

    package = lib.mkOption {
      type = package;
      description = "The venue agent package (this flake's `packages.<system>.venue`).";
    };

    eventFile = lib.mkOption {
      type = path;
      example = lib.literalExpression ''"''${./hosts/lpc-2020}/event.toml"'';
      description = ''
        The event description (event.toml); it holds no secret. The schedule
        and the Nix files it names are read from the same directory, so pass
        the folder (as in the example) rather than the file alone.
      '';
    };

    tokenFile = lib.mkOption {
      type = str;
      example = "/var/lib/secrets/hcloud-token";
      description = ''
        A file holding the Hetzner Cloud API token of the event's project,
        readable by root. A path as a string, so that it never enters the
        Nix store; systemd hands it to the service as a credential.
      '';
    };

    interval = lib.mkOption {
      type = ints.positive;
      default = 60;
      description = "Seconds between the autopilot's looks at the schedule and the load.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.hasPrefix "/" cfg.tokenFile && !lib.hasPrefix builtins.storeDir cfg.tokenFile;
        message = "services.venue.autopilot.tokenFile must be an absolute path outside the Nix store (the token is a secret), not `${cfg.tokenFile}`.";
      }
    ];

    systemd.services.${unit} = {
      description = "venue autopilot: the event's cloud servers as the schedule and the load need";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" "nix-daemon.socket" ];
      # nix-build and `nix copy` (which runs ssh) for the servers' systems.
      path = [ config.nix.package pkgs.openssh pkgs.git ];
      # Keep retrying through a long outage of the API or the network.
      startLimitIntervalSec = 0;
      environment = {
        HOME = "/var/lib/${unit}";
        XDG_CACHE_HOME = "/var/cache/${unit}";
      };
      # Hardened as a network client that writes only its own directories (sandbox.nix).
      serviceConfig = (import ./sandbox.nix).networkService // {
        ExecStart = start;
        LoadCredential = [ "hcloud-token:${cfg.tokenFile}" ];
        DynamicUser = true;
        User = unit;
        StateDirectory = unit;
        StateDirectoryMode = "0700";
        CacheDirectory = unit;
        WorkingDirectory = "/var/lib/${unit}";
        Restart = "on-failure";
        RestartSec = 30;
      };
    };
  };
}
