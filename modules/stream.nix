# The venue's own stream, for rooms bigger than a media server: speakers
# meet on a stage (a BBB or Jitsi room), a capture pushes it as RTMP to the
# origin, and the audience watches HLS, through caching edges when one
# server's link is not enough.
#
# Origin: nginx with the RTMP module. Chosen over mediamtx because the very
# same software (nginx + nginx-rtmp-module) is in Debian (libnginx-mod-rtmp),
# so the offline testbed runs what the servers run, and the HLS files are
# served by the nginx that already terminates TLS on every venue host.
# Edge: nginx's proxy cache in front of the origin's /hls/: segments are
# fetched from the origin once per edge (proxy_cache_lock), playlists at most
# once a second, so the origin's load does not grow with the audience.
#
# Read against nixpkgs (newest stored copies):
# - nixos/modules/services/web-servers/nginx/default.nix @ 5bba330bed5d:
#   `appendConfig` is rendered at the top level (where `rtmp { }` must be),
#   `additionalModules`, `proxyCachePath.<name>` (/var/cache/nginx/<name>,
#   the unit's CacheDirectory), RuntimeDirectory /run/nginx (0750, owned by
#   the nginx user the whole unit runs as, writable under ProtectSystem=strict).
# - nixos/modules/services/web-servers/nginx/location-options.nix @
#   e0741f86b986: per-location `recommendedProxySettings` (default: the
#   global one), `alias` (`nullOr path`, a string is used in place).
# - pkgs' nginxModules.rtmp (arut/nginx-rtmp-module v1.2.2; the newest
#   stored package file, found by its source's `repo = "nginx-rtmp-module"`).
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.stream;

  # Written by nginx's workers (user nginx); tmpfs, gone with the stream.
  hlsDir = "/run/nginx/hls";
  rtmpPort = 1935;

  # A cached proxy to the origin, keeping objects for `valid`.
  edgeLocation = valid: {
    proxyPass = "https://${cfg.edge.origin}";
    # Our own headers: the origin must see its own name.
    recommendedProxySettings = false;
    extraConfig = ''
      proxy_set_header Host ${cfg.edge.origin};
      proxy_ssl_server_name on;
      proxy_ssl_name ${cfg.edge.origin};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache venue_hls;
      # One request to the origin per object, however many viewers ask at
      # once; a stale copy while it is being refreshed.
      proxy_cache_lock on;
      proxy_cache_lock_timeout 5s;
      proxy_cache_use_stale updating error timeout;
      proxy_cache_valid 200 ${valid};
      add_header X-Cache $upstream_cache_status always;
    '';
  };
in
{
  imports = [ ./common.nix ];

  options.services.venue.stream = with lib.types; {
    origin = {
      enable = lib.mkEnableOption "the stream origin: RTMP ingest, packaged as HLS";

      hostName = lib.mkOption {
        type = str;
        example = "lpc-2020-stream-1.lpc.example.org";
        description = "Public name of the origin (HLS at https://<hostName>/hls/<room>.m3u8).";
      };

      publishFrom = lib.mkOption {
        type = listOf str;
        default = [ "127.0.0.1" ];
        example = [ "203.0.113.7" ];
        description = ''
          Addresses (or CIDR ranges) allowed to push a stage's RTMP stream:
          the hosts that capture the stages. Everyone else is refused.
        '';
      };

      fragmentSeconds = lib.mkOption {
        type = ints.positive;
        default = 2;
        description = "HLS segment length.";
      };

      playlistSeconds = lib.mkOption {
        type = ints.positive;
        default = 20;
        description = "How much of the stream a playlist lists (the viewer's rewind window).";
      };
    };

    edge = {
      enable = lib.mkEnableOption "a caching HLS edge in front of the origin";

      hostName = lib.mkOption {
        type = str;
        example = "lpc-2020-edge-1.lpc.example.org";
        description = "Public name of this edge.";
      };

      origin = lib.mkOption {
        type = str;
        example = "lpc-2020-stream-1.lpc.example.org";
        description = "The origin's name ({option}`services.venue.stream.origin.hostName`).";
      };

      cacheSize = lib.mkOption {
        type = str;
        default = "4g";
        description = "Largest size of the segment cache on disk.";
      };
    };
  };

  config = lib.mkMerge [
    (lib.mkIf cfg.origin.enable {
      services.nginx.additionalModules = [ pkgs.nginxModules.rtmp ];
      services.nginx.appendConfig = ''
        rtmp {
          server {
            listen ${toString rtmpPort};
            chunk_size 4096;
            application live {
              live on;
              record off;
              ${lib.concatMapStrings (a: "allow publish ${a};\n") cfg.origin.publishFrom}
              deny publish all;
              # Viewers get HLS only.
              deny play all;
              hls on;
              hls_path ${hlsDir};
              hls_fragment ${toString cfg.origin.fragmentSeconds}s;
              hls_playlist_length ${toString cfg.origin.playlistSeconds}s;
              hls_cleanup on;
            }
          }
        }
      '';

      # Playlists change with every segment; segments never change.
      services.nginx.appendHttpConfig = ''
        map $uri $venue_hls_cache_control {
          ~\.m3u8$ "max-age=1";
          default "max-age=600";
        }
      '';

      services.nginx.virtualHosts.${cfg.origin.hostName} = venue.internal.vhostTls // {
        locations."/hls/" = {
          alias = "${hlsDir}/";
          extraConfig = ''
            types {
              application/vnd.apple.mpegurl m3u8;
              video/mp2t ts;
            }
            add_header Cache-Control $venue_hls_cache_control always;
            add_header Access-Control-Allow-Origin "*" always;
            # Counted by the tests: what reaches the origin.
            access_log /var/log/nginx/hls.log;
          '';
        };
      };

      # 1935 for the capture hosts only: the Hetzner firewall opens it to the
      # event's own servers (agent/src/commands/firewall.rs).
      networking.firewall.allowedTCPPorts = [ 80 443 rtmpPort ];

      services.venue.healthz.checks.stream = null;
    })

    (lib.mkIf cfg.edge.enable {
      services.nginx.proxyCachePath.venue-hls = {
        enable = true;
        keysZoneName = "venue_hls";
        keysZoneSize = "16m";
        maxSize = cfg.edge.cacheSize;
        inactive = "10m";
      };

      services.nginx.virtualHosts.${cfg.edge.hostName} = venue.internal.vhostTls // {
        # Regex locations win over the prefix one: playlists live 1 s.
        locations."~ ^/hls/.+\\.m3u8$" = edgeLocation "1s";
        locations."/hls/" = edgeLocation "10m";
      };

      networking.firewall.allowedTCPPorts = [ 80 443 ];

      services.venue.healthz.checks.edge = null;
    })
  ];
}
