# Stage capture: the stage of a streamed room (its BBB or Jitsi meeting) is
# watched by a headless browser and pushed as RTMP to the stream origin.
#
# - `venue-capture` (the controller, `venue-portal capture`): asks the
#   portal every few seconds which rooms should be live (the schedule with
#   margins, and staff overrides) and starts or stops
#   `venue-capture@<room>.service`. It gets a fresh join URL from the portal
#   for each start and writes it, with the RTMP URL, to
#   /run/venue-capture/<room>/ (0600 in 0700); the unit reads them with
#   LoadCredential, so they are in no command line, environment or store path.
#   A polkit rule lets its user start and stop these units and nothing else.
#   Without the capture secret (missing or empty) it does not start; the
#   agent's upload restarts it (services.venue.secrets.consumers).
# - `venue-capture@<room>`: modules/capture-run.sh (the same script the
#   offline testbed runs with Debian's binaries): Xvfb, a PulseAudio of its
#   own with a null sink, Chromium in kiosk mode on the join URL, and ffmpeg
#   (x11grab + pulse → H.264/AAC → RTMP). One engine for BBB and Jitsi;
#   why not Jibri: docs/stage-capture.md (one session per host, a global
#   display and snd-aloop, on the Jitsi host itself, nothing for BBB).
#
# lib.mkFleet runs the captures on the stream origin (pushing to 127.0.0.1):
# not on a media host, whose CPU the plan gives to the meetings, and no RTMP
# crosses the network.
#
# Read against nixpkgs (newest stored copies):
# - pkgs/by-name/xv/xvfb/package.nix @ 8bccf164c099: `xvfb`, Xvfb alone
#   (--enable-xvfb --disable-xorg), with xkbcomp and xkeyboard-config paths.
# - pkgs/development/libraries/ffmpeg/generic.nix @ 00295488a263 (as read in
#   docs/stage-capture.md): x11grab (withXcb*) and pulse only in the full
#   build; `ffmpeg-full`, as nixpkgs' Jibri module uses.
# - nixos/modules/services/networking/jibri/default.nix @ 3c1331542ff8:
#   `chromium` with --use-fake-ui-for-media-stream --kiosk
#   --autoplay-policy=no-user-gesture-required, as in capture-run.sh.
# - pkgs/build-support/trivial-builders/default.nix @ 00ee9b64aafe:
#   writeShellApplication prepends `#!bash`, `set -o errexit/nounset/
#   pipefail` and `export PATH=…` to capture-run.sh; its checkPhase runs
#   `bash -n`, passthru.tests.shellcheck `shellcheck [--exclude …] <script>`
#   with no excludes here, so the script must pass every check
#   (`shellcheck -s bash modules/capture-run.sh` is clean).
# - nixos/modules/config/pulseaudio.nix @ a31767c8568e: not used; each
#   capture runs `pulseaudio` (pkgs.pulseaudio) as its own user with only
#   the modules it names, so no system-wide sound server is needed.
# - nixos/modules/security/polkit.nix (the stored copy is old, 07a02042;
#   the options are unchanged in name and type): `security.polkit.extraConfig`
#   (lines of JS rules) goes into /etc/polkit-1/rules.d/10-nixos.rules after
#   the admin rule. systemd passes `unit` and `verb` for
#   org.freedesktop.systemd1.manage-units (systemd's own documentation; not
#   read here from source).
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.capture;
  runDir = "/run/venue-capture";
  user = "venue-capture";

  captureRun = pkgs.writeShellApplication {
    name = "venue-capture-run";
    runtimeInputs = [ pkgs.xvfb pkgs.pulseaudio cfg.chromium cfg.ffmpeg pkgs.coreutils pkgs.gnused ];
    text = builtins.readFile ./capture-run.sh;
  };

  # What both units share of systemd's sandboxing (each adds its own).
  sandbox = (import ./sandbox.nix).base;

  # One keyframe per HLS fragment of the origin on this host, if any.
  fragmentSeconds = if venue.stream.origin.enable or false then venue.stream.origin.fragmentSeconds else 2;
in
{
  imports = [ ./common.nix ];

  options.services.venue.capture = with lib.types; {
    enable = lib.mkEnableOption "the stage captures of streamed rooms (a headless browser per stage, pushed as RTMP)";

    package = lib.mkOption {
      type = package;
      description = "The venue-portal package (its `capture` command is the controller).";
    };

    portalUrl = lib.mkOption {
      type = str;
      default = "https://${venue.domain}";
      defaultText = lib.literalExpression ''"https://''${config.services.venue.domain}"'';
      description = "The portal that decides which rooms are live.";
    };

    secretFile = lib.mkOption {
      type = str;
      default = "${venue.secretsDir}/capture-secret";
      defaultText = lib.literalExpression ''"''${config.services.venue.secretsDir}/capture-secret"'';
      description = "File holding the secret shared with the portal's capture API.";
    };

    pollSeconds = lib.mkOption {
      type = ints.positive;
      default = 5;
      description = "How often the controller asks the portal.";
    };

    size = lib.mkOption {
      type = strMatching "[0-9]+x[0-9]+";
      default = "1280x720";
      description = "Picture size of the captured stage.";
    };

    fps = lib.mkOption {
      type = ints.positive;
      default = 30;
      description = "Frames per second.";
    };

    videoBitrate = lib.mkOption {
      type = str;
      default = "2300k";
      description = "H.264 bitrate (with 128k of AAC, about the plan's 2.5 Mbit/s per viewer).";
    };

    chromium = lib.mkOption {
      type = package;
      default = pkgs.chromium;
      defaultText = lib.literalExpression "pkgs.chromium";
      description = "The browser that joins the stage.";
    };

    ffmpeg = lib.mkOption {
      type = package;
      default = pkgs.ffmpeg-full;
      defaultText = lib.literalExpression "pkgs.ffmpeg-full";
      description = "ffmpeg with x11grab and PulseAudio input (nixpkgs' smaller builds have neither).";
    };
  };

  config = lib.mkIf cfg.enable {
    users.users.${user} = {
      isSystemUser = true;
      group = user;
      description = "venue stage capture controller";
    };
    users.groups.${user} = { };

    security.polkit.enable = true;
    security.polkit.extraConfig = ''
      // venue: the capture controller starts and stops its capture units, only them.
      polkit.addRule(function(action, subject) {
        if (action.id == "org.freedesktop.systemd1.manage-units" && subject.user == "${user}") {
          var unit = action.lookup("unit");
          var verb = action.lookup("verb");
          if (unit && /^venue-capture@[a-z0-9-]+\.service$/.test(unit) &&
              (verb == "start" || verb == "stop" || verb == "restart")) {
            return polkit.Result.YES;
          }
        }
      });
    '';

    # Text in the stage (names, slides) needs fonts on a server without a desktop.
    fonts.enableDefaultPackages = true;

    systemd.services.venue-capture = {
      description = "venue stage capture controller";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      path = [ config.systemd.package ];
      serviceConfig = sandbox // {
        ExecStart = lib.escapeShellArgs [
          (lib.getExe' cfg.package "venue-portal")
          "capture"
          "--portal"
          cfg.portalUrl
          "--secret-file"
          "%d/capture-secret"
          "--interval"
          (toString cfg.pollSeconds)
          "--state"
          runDir
        ];
        LoadCredential = [ "capture-secret:${cfg.secretFile}" ];
        ExecStartPre = [ (venue.secrets.requireFilesCommand "venue-capture" [ cfg.secretFile ]) ];
        User = user;
        Group = user;
        RuntimeDirectory = "venue-capture";
        RuntimeDirectoryMode = "0700";
        # Running captures keep their inputs across a controller restart.
        RuntimeDirectoryPreserve = true;
        Restart = "always";
        RestartSec = 5;
        # systemctl talks to PID 1 over D-Bus (a unix socket).
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        RestrictNamespaces = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" "~@privileged @resources" ];
        UMask = "0077";
      };
    };

    services.venue.secrets.consumers."venue-capture.service" = [ cfg.secretFile ];

    systemd.services."venue-capture@" = {
      description = "venue stage capture of room %i";
      # Started by the controller only; stopped with it never (a restart of
      # the controller must not cut the stream).
      environment = {
        CAPTURE_SIZE = cfg.size;
        CAPTURE_FPS = toString cfg.fps;
        CAPTURE_GOP = toString (cfg.fps * fragmentSeconds);
        CAPTURE_VIDEO_BITRATE = cfg.videoBitrate;
        CAPTURE_CHROMIUM = lib.getExe cfg.chromium;
      };
      serviceConfig = sandbox // {
        ExecStart = "${lib.getExe captureRun} %i";
        LoadCredential = [
          "join-url:${runDir}/%i/join-url"
          "rtmp-url:${runDir}/%i/rtmp-url"
        ];
        DynamicUser = true;
        RuntimeDirectory = "venue-capture-room/%i";
        RuntimeDirectoryMode = "0700";
        Restart = "on-failure";
        RestartSec = 5;
        TimeoutStopSec = 15;
        # A browser and an encoder: bounded, so one stage cannot starve another.
        MemoryMax = "3G";
        CPUWeight = 200;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" "AF_NETLINK" ];
        # Not RestrictNamespaces, MemoryDenyWriteExecute or a syscall filter:
        # Chromium's sandbox makes user namespaces, and V8 writes code at run time.
        SystemCallArchitectures = "native";
        UMask = "0077";
      };
    };
  };
}
