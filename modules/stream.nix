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
# The origin's name is resolved when requests need it (a variable in
# proxy_pass, nginx's `resolver`), not once at start: the edge starts before
# the origin's record exists, and follows it when the origin is replaced.
# nginx's resolver speaks DNS only, so it asks the host's systemd-resolved
# stub, which knows the DHCP servers and /etc/hosts.
#
# Health: the origin's is the RTMP module's own status page (rtmp_stat),
# the edge's is the origin's, fetched through the edge's resolver.
#
# Read against nixpkgs (newest stored copies):
# - nixos/modules/services/web-servers/nginx/default.nix @ 5bba330bed5d:
#   `appendConfig` is rendered at the top level (where `rtmp { }` must be),
#   `additionalModules`, `proxyCachePath.<name>` (/var/cache/nginx/<name>,
#   the unit's CacheDirectory), RuntimeDirectory /run/nginx (0750, owned by
#   the nginx user the whole unit runs as, writable under ProtectSystem=strict).
#   `resolver.{addresses,valid,ipv4,ipv6}` is rendered as `resolver …` in
#   the http block (asserts ipv4 || ipv6); a vhost's `listen` list replaces
#   the default listen addresses.
# - nixos/modules/services/web-servers/nginx/location-options.nix @
#   e0741f86b986: per-location `recommendedProxySettings` (default: the
#   global one), `alias` (`nullOr path`, a string is used in place).
# - nixos/modules/system/boot/resolved.nix @ 00fad191192c: `services.resolved.enable`,
#   asserts !networking.useHostResolvConf; its stub listens on 127.0.0.53.
# - pkgs' nginxModules.rtmp (arut/nginx-rtmp-module v1.2.2; the newest
#   stored package file, found by its source's `repo = "nginx-rtmp-module"`):
#   `rtmp_stat all` in an http location reports the rtmp block's servers.
{ config, lib, pkgs, ... }:

let
  venue = config.services.venue;
  cfg = venue.stream;

  # Written by nginx's workers (user nginx); tmpfs, gone with the stream.
  hlsDir = "/run/nginx/hls";
  rtmpPort = 1935;
  # Loopback-only status servers the health checks ask.
  originStatPort = 8091;
  edgeStatPort = 8092;
  resolvedStub = "127.0.0.53";

  # A cached proxy to the origin, keeping objects for `valid`. The variable
  # makes nginx resolve the name per request (within `resolver valid=`).
  edgeLocation = valid: {
    # Our own headers: the origin must see its own name.
    recommendedProxySettings = false;
    extraConfig = ''
      set $venue_origin ${cfg.edge.origin};
      proxy_pass https://$venue_origin;
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

      resolvers = lib.mkOption {
        type = listOf str;
        default = [ resolvedStub ];
        example = [ "185.12.64.1" "185.12.64.2" ];
        description = ''
          DNS servers nginx asks for the origin's address, at request time.
          The default is systemd-resolved's stub on this host (turned on
          with it), which forwards to the servers DHCP gave and answers
          from /etc/hosts; give addresses where resolved cannot run (a
          container using the host's resolv.conf).
        '';
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

      # The RTMP side's own report; loopback only.
      services.nginx.virtualHosts.venue-stream-stat = {
        listen = [{ addr = "127.0.0.1"; port = originStatPort; }];
        locations."= /rtmp-stat".extraConfig = ''
          rtmp_stat all;
        '';
      };

      # 1935 for the capture hosts only: the Hetzner firewall opens it to the
      # event's own servers (agent/src/commands/firewall.rs).
      networking.firewall.allowedTCPPorts = [ 80 443 rtmpPort ];

      services.venue.healthz.checks.stream = "http://127.0.0.1:${toString originStatPort}/rtmp-stat";
    })

    (lib.mkIf cfg.edge.enable {
      services.nginx.proxyCachePath.venue-hls = {
        enable = true;
        keysZoneName = "venue_hls";
        keysZoneSize = "16m";
        maxSize = cfg.edge.cacheSize;
        inactive = "10m";
      };

      assertions = [{
        assertion = cfg.edge.resolvers != [ ]
          && (lib.elem resolvedStub cfg.edge.resolvers -> config.services.resolved.enable);
        message = "services.venue.stream.edge.resolvers: needs at least one DNS server, and ${resolvedStub} (the default) needs services.resolved.enable; give other addresses where resolved cannot run.";
      }];

      services.resolved.enable = lib.mkIf (lib.elem resolvedStub cfg.edge.resolvers) (lib.mkDefault true);

      services.nginx.resolver = {
        addresses = cfg.edge.resolvers;
        # At most this long on an old address when the origin moves.
        valid = "30s";
      };

      services.nginx.virtualHosts.${cfg.edge.hostName} = venue.internal.vhostTls // {
        # Regex locations win over the prefix one: playlists live 1 s.
        locations."~ ^/hls/.+\\.m3u8$" = edgeLocation "1s";
        locations."/hls/" = edgeLocation "10m";
      };

      # The origin's health, asked the way the edge reaches it. Any name the
      # origin does not serve lands on its health server (common.nix).
      services.nginx.virtualHosts.venue-edge-origin = {
        listen = [{ addr = "127.0.0.1"; port = edgeStatPort; }];
        locations."= /origin".extraConfig = ''
          set $venue_origin ${cfg.edge.origin};
          proxy_pass http://$venue_origin/healthz/stream;
          proxy_set_header Host venue-health.invalid;
          proxy_connect_timeout 5s;
          proxy_read_timeout 10s;
        '';
      };

      networking.firewall.allowedTCPPorts = [ 80 443 ];

      services.venue.healthz.checks.edge = "http://127.0.0.1:${toString edgeStatPort}/origin";
    })
  ];
}
