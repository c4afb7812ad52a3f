#!/usr/bin/env bash
# The stream of a big room, rehearsed with the software the servers run
# (modules/stream.nix): nginx with the RTMP module as the origin, a second
# nginx as a caching edge, ffmpeg pushing a test pattern as the stage. Each
# runs in a network namespace of its own (addresses 10.233.250.0/30 and
# .4/30, links this script makes and removes). wrk then plays the audience
# against the edge at growing sizes, fetching the live segments; the script
# prints the segment fetch latency (p50, p99) and how many requests reached
# the origin, and fails if the origin's requests grow with the audience.
#
#   tests/testbed/stream-bench.sh [CLIENTS...]     (default: 100 300 500)
#
# Needs root, iproute2, nginx with libnginx-mod-rtmp, ffmpeg, wrk, curl
# (scripts/install-deps). Traffic stays on links this script created; every
# run is bounded (5 s per size) and everything is stopped at the end.
set -euo pipefail
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 300 500)
duration=${STREAM_BENCH_SECONDS:-5}

for tool in ip nginx ffmpeg wrk curl; do
  command -v "$tool" >/dev/null || { echo "stream-bench: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done
rtmp_module=/usr/lib/nginx/modules/ngx_rtmp_module.so
[ -f "$rtmp_module" ] || { echo "stream-bench: no $rtmp_module (apt-get install libnginx-mod-rtmp)" >&2; exit 1; }

id=$$
work=$(mktemp -d)
origin_ns=vstr-o-$id edge_ns=vstr-e-$id
o_out=vso$id o_in=vsi$id e_out=veo$id e_in=vei$id
origin_ip=10.233.250.2 edge_ip=10.233.250.6
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in "$origin_ns" "$edge_ns"; do
    [ -f "$work/$ns.pid" ] && kill "$(cat "$work/$ns.pid")" 2>/dev/null || true
  done
  sleep 0.2
  ip netns del "$origin_ns" 2>/dev/null || true
  ip netns del "$edge_ns" 2>/dev/null || true
  ip link del "$o_out" 2>/dev/null || true
  ip link del "$e_out" 2>/dev/null || true
  [ -n "${STREAM_BENCH_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# A namespace on a /30 of its own: $1 name, $2 outer veth, $3 inner, $4 outer address, $5 inner address.
link() {
  ip netns add "$1"
  ip link add "$2" type veth peer name "$3"
  ip link set "$3" netns "$1"
  ip addr add "$4/30" dev "$2"
  ip link set "$2" up
  ip netns exec "$1" ip addr add "$5/30" dev "$3"
  ip netns exec "$1" ip link set "$3" up
  ip netns exec "$1" ip link set lo up
  ip netns exec "$1" ip route add default via "$4"
}
link "$origin_ns" "$o_out" "$o_in" 10.233.250.1 "$origin_ip"
link "$edge_ns" "$e_out" "$e_in" 10.233.250.5 "$edge_ip"
# The edge reaches the origin through this machine.
sysctl -qw net.ipv4.ip_forward=1

common() { # $1: name
  cat <<EOF
pid $work/$1.pid;
error_log $work/$1.error.log;
daemon on;
worker_processes 2;
events { worker_connections 4096; }
EOF
}

# The origin, as modules/stream.nix configures it.
# Debian's nginx workers run as www-data: they write the segments and the cache.
mkdir -p "$work/hls" "$work/cache" "$work/tmp-o" "$work/tmp-e"
chmod 0755 "$work"
chown www-data "$work/hls" "$work/cache" "$work/tmp-o" "$work/tmp-e"
{
  echo "load_module $rtmp_module;"
  common "$origin_ns"
  cat <<EOF
rtmp {
  server {
    listen $origin_ip:1935;
    chunk_size 4096;
    application live {
      live on;
      record off;
      allow publish 10.233.250.1;
      deny publish all;
      deny play all;
      hls on;
      hls_path $work/hls;
      hls_fragment 1s;
      hls_playlist_length 10s;
      hls_cleanup on;
    }
  }
}
http {
  access_log $work/origin.access.log;
  client_body_temp_path $work/tmp-o; proxy_temp_path $work/tmp-o; fastcgi_temp_path $work/tmp-o; uwsgi_temp_path $work/tmp-o; scgi_temp_path $work/tmp-o;
  map \$uri \$hls_cache_control { ~\.m3u8\$ "max-age=1"; default "max-age=600"; }
  server {
    listen $origin_ip:80;
    location /hls/ {
      alias $work/hls/;
      types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
      add_header Cache-Control \$hls_cache_control always;
    }
  }
}
EOF
} >"$work/origin.conf"

# The edge, as modules/stream.nix configures it (plain HTTP here: the TLS
# part is nginx's own, tested in the VM test).
{
  common "$edge_ns"
  cat <<EOF
http {
  access_log off;
  client_body_temp_path $work/tmp-e; proxy_temp_path $work/tmp-e; fastcgi_temp_path $work/tmp-e; uwsgi_temp_path $work/tmp-e; scgi_temp_path $work/tmp-e;
  proxy_cache_path $work/cache keys_zone=venue_hls:16m levels=1:2 inactive=10m max_size=1g use_temp_path=off;
  server {
    listen $edge_ip:80;
    location ~ ^/hls/.+\.m3u8\$ {
      proxy_pass http://$origin_ip;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache venue_hls; proxy_cache_lock on; proxy_cache_lock_timeout 5s;
      proxy_cache_use_stale updating error timeout; proxy_cache_valid 200 1s;
      add_header X-Cache \$upstream_cache_status always;
    }
    location /hls/ {
      proxy_pass http://$origin_ip;
      proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_cache venue_hls; proxy_cache_lock on; proxy_cache_lock_timeout 5s;
      proxy_cache_use_stale updating error timeout; proxy_cache_valid 200 10m;
      add_header X-Cache \$upstream_cache_status always;
    }
  }
}
EOF
} >"$work/edge.conf"

ip netns exec "$origin_ns" nginx -c "$work/origin.conf" -p "$work"
ip netns exec "$edge_ns" nginx -c "$work/edge.conf" -p "$work"

# The stage: a 720p test pattern at 2.5 Mbit/s, as a capture would push it.
ffmpeg -nostdin -loglevel error -re -f lavfi -i "testsrc2=size=1280x720:rate=25" \
  -f lavfi -i "sine=frequency=440" -c:v libx264 -preset ultrafast -tune zerolatency \
  -b:v 2300k -maxrate 2300k -bufsize 2300k -g 25 -c:a aac -b:a 128k \
  -f flv "rtmp://$origin_ip/live/stage" >"$work/ffmpeg.log" 2>&1 &
pids+=($!)

for _ in $(seq 150); do
  [ -s "$work/hls/stage.m3u8" ] && [ "$(grep -c '\.ts$' "$work/hls/stage.m3u8")" -ge 3 ] && break
  sleep 0.1
done
[ -s "$work/hls/stage.m3u8" ] || { echo "stream-bench: the origin made no playlist" >&2; cat "$work/ffmpeg.log" "$work/origin.error.log" >&2; exit 1; }

# A stranger may not publish.
if timeout 10 ip netns exec "$edge_ns" ffmpeg -nostdin -loglevel quiet -re -f lavfi -i testsrc -t 2 \
  -c:v libx264 -preset ultrafast -f flv "rtmp://$origin_ip/live/intruder" 2>/dev/null; then
  echo "stream-bench: the origin took a stream from an address not allowed" >&2; exit 1
fi

# The audience: every client plays the newest segments, as a player does.
cat >"$work/viewer.lua" <<'EOF'
local segments = {}
local i = 0
init = function(args)
  for s in io.open(args[1]):read("*a"):gmatch("[^\n]+") do table.insert(segments, s) end
end
request = function()
  i = i + 1
  return wrk.format("GET", "/hls/" .. segments[(i % #segments) + 1])
end
EOF

printf '%-8s %12s %10s %10s %16s %10s\n' clients requests/s p50 p99 origin-requests non-2xx
origin_counts=()
for clients in "${sizes[@]}"; do
  grep '\.ts$' "$work/hls/stage.m3u8" | tail -n 3 >"$work/segments"
  before=$(grep -c 'GET /hls/' "$work/origin.access.log" || true)
  out=$(ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; wrk -t2 -c"$clients" -d"${duration}s" --timeout 10s --latency \
    -s "$work/viewer.lua" "http://$edge_ip" -- "$work/segments")
  after=$(grep -c 'GET /hls/' "$work/origin.access.log" || true)
  rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out"); bad=${bad:-0}
  origin=$((after - before))
  origin_counts+=("$origin")
  printf '%-8s %12s %10s %10s %16s %10s\n' "$clients" "$rps" "$p50" "$p99" "$origin" "$bad"
  [ "$bad" = 0 ] || { echo "stream-bench: $bad failed fetches" >&2; exit 1; }
done

# Flat: each size asked the origin at most once per segment it played (what
# the edge had not cached yet), however many clients played them.
for n in "${origin_counts[@]}"; do
  if [ "$n" -gt 3 ]; then
    echo "stream-bench: the origin served more than one request per segment: ${origin_counts[*]}" >&2
    exit 1
  fi
done
echo "origin requests per size: ${origin_counts[*]} (flat: the edge absorbs the audience)"
