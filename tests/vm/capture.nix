# A stage capture on the stream origin (as lib.mkFleet places it): given a
# join URL and the RTMP URL the way the controller hands them over (files
# in /run/venue-capture/<room>/, read by the unit with LoadCredential),
# `venue-capture@stage.service` films the page with nixpkgs' Xvfb,
# PulseAudio, Chromium and ffmpeg-full and pushes it to the origin, which
# packages HLS; a viewer fetches the playlist and a segment through an edge,
# with video and audio in it. Stopping the unit ends the stream. The
# controller (`venue-portal capture`) runs too, with no portal to reach: it
# must leave the running capture alone. Without its secret the controller
# does not start, and the agent's upload of it starts it again.
{ pkgs, venueModules, portalPackage }:

let
  # The stage: a page that moves and makes a sound (the browser plays into
  # the capture's own null sink).
  stage = pkgs.writeText "stage.html" ''
    <!DOCTYPE html><meta charset="utf-8"><title>stage</title>
    <body style="margin:0;background:#234;color:#fff;font:80px sans-serif">
    <p id="t">venue stage</p>
    <script>
      setInterval(() => { document.getElementById("t").textContent = "venue stage " + Date.now(); }, 200);
      const a = new AudioContext(), o = a.createOscillator(); o.connect(a.destination); o.start();
    </script>
  '';
in
pkgs.testers.runNixOSTest {
  name = "venue-capture";

  nodes = {
    origin = {
      imports = [ venueModules (import ./secrets.nix { capture-secret = "capture-secret-for-the-vm-test"; }) ];
      services.venue = {
        domain = "test";
        stream.origin = {
          enable = true;
          hostName = "origin";
          fragmentSeconds = 1;
        };
        capture = {
          enable = true;
          package = portalPackage;
          # Nobody answers here: the controller must change nothing.
          portalUrl = "http://127.0.0.1:9";
          size = "640x360";
          videoBitrate = "800k";
        };
      };
      virtualisation.memorySize = 3072;
      virtualisation.cores = 2;
    };

    edge = {
      imports = [ venueModules (import ./secrets.nix { }) ];
      services.venue = {
        domain = "test";
        stream.edge = {
          enable = true;
          hostName = "edge";
          origin = "origin";
        };
      };
    };

    viewer = { pkgs, ... }: {
      environment.systemPackages = [ pkgs.curl pkgs.ffmpeg-headless ];
    };
  };

  testScript = ''
    start_all()
    origin.wait_for_unit("nginx.service")
    origin.wait_for_open_port(1935)
    origin.wait_for_unit("venue-capture.service")
    edge.wait_for_unit("nginx.service")

    with subtest("the controller's inputs, private"):
        origin.succeed(
            "install -d -m 0700 -o venue-capture -g venue-capture /run/venue-capture/stage",
            "echo file://${stage} > /run/venue-capture/stage/join-url",
            "echo rtmp://127.0.0.1/live/stage > /run/venue-capture/stage/rtmp-url",
            "chmod 0600 /run/venue-capture/stage/*",
        )

    with subtest("the capture films the stage and pushes it to the origin"):
        origin.succeed("systemctl start venue-capture@stage.service")
        origin.wait_until_succeeds("test -s /run/nginx/hls/stage.m3u8", timeout=120)
        # The join URL (BBB's carries a session) is on no command line: the
        # browser opens a local page that moves on to it.
        origin.succeed("ps -eo args | grep -v grep | grep -q x11grab")
        origin.fail("ps -eo args | grep -v grep | grep -q '${stage}'")

    with subtest("the viewer gets it through the edge, picture and sound"):
        line = viewer.wait_until_succeeds("curl -sfk https://edge/hls/stage.m3u8 | grep -m1 '\\.ts$'", timeout=60)
        segment = line.strip().splitlines()[0]
        viewer.succeed(f"curl -sfk -o /tmp/seg.ts https://edge/hls/{segment}")
        streams = viewer.succeed("ffprobe -v error -show_streams /tmp/seg.ts")
        assert "codec_type=video" in streams and "codec_type=audio" in streams, streams
        assert "width=640" in streams, streams

    with subtest("the controller, without a portal, leaves it running"):
        origin.sleep(12)
        origin.succeed("systemctl is-active venue-capture@stage.service")
        origin.succeed("journalctl -u venue-capture.service | grep -q 'captures left as they are'")

    with subtest("stopping the capture ends the push"):
        origin.succeed("systemctl stop venue-capture@stage.service")
        origin.fail("pgrep -f x11grab")
        origin.fail("pgrep -f Xvfb")

    with subtest("the controller refuses an empty secret, naming it"):
        origin.succeed("systemctl stop venue-secrets-changed.path")
        origin.succeed("install -m 0400 /dev/null /var/lib/venue/secrets/capture-secret")
        origin.fail("systemctl restart venue-capture.service")
        origin.succeed(
            "journalctl -u venue-capture.service | grep -q '/var/lib/venue/secrets/capture-secret is missing or empty'"
        )

    with subtest("the agent's upload starts it again"):
        # Stopped, so that only the path unit's run (not Restart=always) can
        # bring it back.
        origin.succeed("systemctl stop venue-capture.service")
        origin.sleep(7)
        origin.fail("systemctl is-active venue-capture.service")
        origin.succeed("systemctl start venue-secrets-changed.path")
        origin.succeed(
            "printf capture-secret-for-the-vm-test-2 > /var/lib/venue/secrets/.capture-secret"
            " && chmod 0400 /var/lib/venue/secrets/.capture-secret"
            " && mv /var/lib/venue/secrets/.capture-secret /var/lib/venue/secrets/capture-secret"
        )
        origin.wait_until_succeeds("systemctl is-active venue-capture.service", timeout=60)
        origin.succeed(
            "journalctl -u venue-secrets-changed.service -o cat | grep -q '^secrets changed: restarted .*venue-capture.service'"
        )
  '';
}
