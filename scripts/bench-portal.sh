#!/usr/bin/env bash
# Load test of venue-portal against the timetable and the staff status page,
# with the LPC 2020 example and a fake BigBlueButton with some running
# meetings, side by side with nginx serving the same rendered timetable page
# as a static file (the ceiling for this machine). Prints requests per
# second, p50 and p99 latency, and the portal's timetable throughput as a
# fraction of nginx's.
#
#   scripts/bench-portal.sh [DURATION_SECONDS] [CONNECTIONS] [THREADS] [ROUNDS]
#
# The portal and nginx take turns for ROUNDS rounds (default 3) on the same
# cores, so that noise from other work on the machine hits both; the ratio
# is of the medians.
#
# Needs wrk, nginx and curl (scripts/install-deps). Everything listens on
# 127.0.0.1 only; every server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
connections=${2:-100}
threads=${3:-4}
rounds=${4:-3}

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is not installed" >&2; exit 1; }
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx is not installed (apt-get install -y nginx-light)" >&2; exit 1; }

echo "== building (release)"
cargo build --release --quiet -p venue-portal --bin venue-portal --example fake-bbb
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target/release/venue-portal
fake=$target/release/examples/fake-bbb

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# wait_line FILE PREFIX: prints the rest of the first line of FILE starting with PREFIX.
wait_line() {
  for _ in $(seq 200); do
    if line=$(grep -m1 "^$2" "$1" 2>/dev/null); then echo "${line#"$2"}"; return; fi
    sleep 0.05
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

secret=bench-bbb-secret-$RANDOM$RANDOM
# Twelve running meetings, ten of them rooms of the LPC example.
rooms=lpc-2020-refereed-track,lpc-2020-kernel-summit,lpc-2020-microconference-1,lpc-2020-microconference-2,lpc-2020-gnu-tools-track,lpc-2020-networking-and-bpf-summit,lpc-2020-bofs,lpc-2020-hackroom-1,lpc-2020-hackroom-2,lpc-2020-staff
"$fake" 127.0.0.1:0 "$secret" 12 "$rooms" >"$work/fake.out" 2>&1 &
pids+=($!)
bbb_url=$(wait_line "$work/fake.out" "fake-bbb listening on ")/bigbluebutton/api

printf '%s\n' "$secret" >"$work/bbb-secret"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/session-secret"
cat >"$work/portal.toml" <<TOML
session_secret_file = "$work/session-secret"
poll_interval_seconds = 10
[[bbb]]
name = "bench-bbb-1"
url = "$bbb_url"
secret_file = "$work/bbb-secret"
checksum = "sha256"
TOML
printf 'email,code,role\nstaff@example.org,bench-staff-code,staff\n' >"$work/tickets.csv"
"$bin" tickets import "$work/tickets.csv" --state "$work/state" >/dev/null

RUST_LOG=warn "$bin" serve --event hosts/lpc-2020/event.toml --listen 127.0.0.1:0 \
  --state "$work/state" --config "$work/portal.toml" >"$work/portal.out" 2>"$work/portal.err" &
pids+=($!)
base=$(wait_line "$work/portal.out" "venue-portal listening on ")

# Log in through the form, as a browser does.
jar=$work/cookies
csrf=$(curl -s -c "$jar" "$base/login" | grep -o 'name="csrf" value="[^"]*"' | head -1 | cut -d'"' -f4)
curl -s -o /dev/null -b "$jar" -c "$jar" --data-urlencode "email=staff@example.org" \
  --data-urlencode "code=bench-staff-code" --data-urlencode "csrf=$csrf" "$base/login"
session=$(awk '$6 == "venue_session" { print $7 }' "$jar")
[ -n "$session" ] || { echo "login failed" >&2; cat "$work/portal.err" >&2; exit 1; }
sleep 0.5 # the first poll

timetable="/timetable?at=2020-08-24T15:30:00Z"

# nginx serves the very page the portal renders for this session, as a file.
mkdir -p "$work/www" "$work/nginx"
chmod 755 "$work" "$work/www"
curl -s -H "Cookie: venue_session=$session" "$base$timetable" >"$work/www/timetable.html"
grep -q 'Running now' "$work/www/timetable.html" || { echo "the timetable did not render" >&2; exit 1; }
nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  types { text/html html; }
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
  }
}
NGINX
"$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>"$work/nginx/stderr" &
pids+=($!)
static="http://127.0.0.1:$nginx_port/timetable.html"
for _ in $(seq 100); do curl -sf -o /dev/null "$static" && break; sleep 0.05; done
curl -sf -o /dev/null "$static" || { echo "nginx did not start" >&2; cat "$work/nginx/stderr" "$work/nginx/error.log" >&2; exit 1; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "== $(nproc) cores; wrk -t$threads -c$connections -d${duration}s; ulimit -n $(ulimit -n)"
printf '%-44s %12s %10s %10s %8s\n' "page" "requests/s" "p50" "p99" "non-2xx"
# bench NAME URL: one wrk run; prints a line and leaves requests/s in $rps.
bench() {
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: venue_session=$session" "$2")
  [ "$code" = 200 ] || { echo "$1 answered $code" >&2; exit 1; }
  out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --timeout 10s --latency \
    -H "Cookie: venue_session=$session" "$2")
  rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out"); bad=${bad:-0}
  errors=$(grep -m1 'Socket errors' <<<"$out" || true)
  printf '%-44s %12s %10s %10s %8s\n' "$1" "$rps" "$p50" "$p99" "$bad"
  [ -z "$errors" ] || echo "   $errors"
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
portal_all=""; nginx_all=""
for round in $(seq "$rounds"); do
  bench "portal $timetable" "$base$timetable"; portal_all="$portal_all $rps"
  bench "nginx  /timetable.html (static, round $round)" "$static"; nginx_all="$nginx_all $rps"
done
bench "portal /status" "$base/status"
portal_rps=$(median <<<"$portal_all")
nginx_rps=$(median <<<"$nginx_all")
size=$(wc -c <"$work/www/timetable.html")
echo "== medians of $rounds rounds (page of $size bytes)"
printf '%-44s %12.0f\n' "portal $timetable" "$portal_rps" "nginx  /timetable.html (static)" "$nginx_rps"
awk -v p="$portal_rps" -v n="$nginx_rps" 'BEGIN { printf "timetable: portal / nginx = %.2fx\n", p / n }'
