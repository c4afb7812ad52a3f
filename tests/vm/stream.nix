# A stage's stream: ffmpeg pushes an RTMP test pattern to the origin, which
# packages HLS; a viewer fetches the playlist and a segment through an edge,
# many times, and the origin sees each segment once (the edge's cache holds
# the audience). Pushing from an address not allowed is refused.
# The edge knows the origin by a name that does not resolve when it starts
# (`live.test`, in no /etc/hosts at boot): it must start all the same, and
# serve the stream once the name resolves, without a restart. Health asks
# the RTMP side of the origin, and the edge asks the origin.
{ pkgs, venueModules }:

pkgs.testers.runNixOSTest {
  name = "venue-stream";

  nodes = {
    origin = { nodes, ... }: {
      imports = [ venueModules (import ./secrets.nix { }) ];
      services.venue = {
        domain = "test";
        stream.origin = {
          enable = true;
          hostName = "live.test";
          # The capture host only.
          publishFrom = [ nodes.capture.networking.primaryIPAddress ];
          fragmentSeconds = 1;
        };
      };
    };

    edge = {
      imports = [ venueModules (import ./secrets.nix { }) ];
      services.venue = {
        domain = "test";
        stream.edge = {
          enable = true;
          hostName = "edge";
          origin = "live.test";
        };
      };
    };

    capture = { pkgs, ... }: {
      environment.systemPackages = [ pkgs.ffmpeg-headless ];
    };

    viewer = { pkgs, ... }: {
      environment.systemPackages = [ pkgs.curl pkgs.ffmpeg-headless ];
    };
  };

  testScript = { nodes, ... }: ''
    import re

    start_all()
    origin.wait_for_unit("nginx.service")
    origin.wait_for_open_port(1935)
    # nginx resolving the origin at start would not start at all here.
    edge.wait_for_unit("nginx.service")
    edge.fail("getent hosts live.test")

    with subtest("a stranger cannot publish"):
        viewer.fail(
            "timeout 20 ffmpeg -loglevel error -re -f lavfi -i testsrc=size=320x240:rate=25 -t 3 "
            "-c:v libx264 -preset ultrafast -g 25 -f flv rtmp://origin/live/stage"
        )

    with subtest("the capture host's stage becomes HLS on the origin"):
        capture.succeed(
            "systemd-run --unit stage ffmpeg -loglevel error -re -f lavfi -i testsrc=size=320x240:rate=25 "
            "-f lavfi -i sine=frequency=440 -c:v libx264 -preset ultrafast -g 25 -c:a aac "
            "-f flv rtmp://origin/live/stage"
        )
        origin.wait_until_succeeds("test -s /run/nginx/hls/stage.m3u8", timeout=60)

    with subtest("the edge follows the origin's name as soon as it resolves"):
        code = viewer.succeed("curl -sk -o /dev/null -w '%{http_code}' https://edge/hls/stage.m3u8")
        assert code == "502", code
        # As a new DNS record would: the name now resolves on the edge.
        edge.succeed(
            "cat /etc/hosts > /tmp/hosts",
            "echo '${nodes.origin.networking.primaryIPAddress} live.test' >> /tmp/hosts",
            "rm /etc/hosts && install -m 0644 /tmp/hosts /etc/hosts",
        )
        edge.wait_until_succeeds("getent hosts live.test")

    with subtest("the viewer plays it through the edge"):
        # Within the resolver's `valid` for the failed lookup above.
        playlist = viewer.wait_until_succeeds("curl -sfk https://edge/hls/stage.m3u8 | grep -m1 '\\.ts$'", timeout=120)
        segment = playlist.strip().splitlines()[0]
        viewer.succeed(f"curl -sfk -o /tmp/seg.ts https://edge/hls/{segment}")
        viewer.succeed("ffprobe -v error -show_streams /tmp/seg.ts | grep -q codec_type=video")

    with subtest("the edge absorbs the audience: the origin serves each segment once"):
        for _ in range(50):
            viewer.succeed(f"curl -sfk -o /dev/null https://edge/hls/{segment}")
        hits = int(origin.succeed(f"grep -c 'GET /hls/{segment} ' /var/log/nginx/hls.log").strip())
        assert hits == 1, hits
        cache = viewer.succeed(f"curl -sfk -D - -o /dev/null https://edge/hls/{segment}")
        assert re.search(r"(?i)^x-cache: HIT", cache, re.M), cache

    with subtest("health asks the origin's RTMP side, and the edge asks the origin"):
        stat = viewer.succeed("curl -sf http://origin/healthz/stream")
        assert "<rtmp>" in stat and "<name>stage</name>" in stat, stat
        stat = viewer.succeed("curl -sf http://edge/healthz/edge")
        assert "<rtmp>" in stat, stat
        origin.succeed("systemctl stop nginx.service")
        code = viewer.succeed("curl -s -o /dev/null -w '%{http_code}' http://edge/healthz/edge")
        assert code in ("502", "504"), code
  '';
}
