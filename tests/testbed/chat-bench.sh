#!/usr/bin/env bash
# The chat role under load, with the software it runs: Synapse (the version
# scripts/install-deps pins) on PostgreSQL from Debian, both inside one test
# host (a network namespace on 10.233.251.0/30, a link this script makes and
# removes), Synapse listening on the host's address. chat-load
# (tests/testbed/src/bin/chat-load.rs) registers the users with the shared
# secret, spreads them over rooms, has each post messages at a fixed total
# rate, and times every message from its send to its arrival in the /sync of a
# listener in the room. Prints send and end-to-end latency (p50/p90/p99/max),
# throughput, errors, and the CPU seconds of Synapse and PostgreSQL.
#
#   tests/testbed/chat-bench.sh [--smoke] [--users N] [--rooms R] [--messages M] [--rate MSG/S]
#
# Default: 1000 users in 10 rooms, 3 messages each, 20 messages/s in all.
# --smoke: 50 users in 5 rooms, 2 messages each, 20/s (CI's size).
# Exits non-zero if any message failed or was not seen by its room's listener.
# CHAT_BENCH_KEEP=1 keeps the work directory (logs, configs) for a look.
#
# Needs root, iproute2, util-linux (setpriv), curl, PostgreSQL and the Synapse
# virtualenv (scripts/install-deps). Traffic stays on the link this script
# made; the load is bounded in count and time, and everything it started is
# stopped on exit, on failure and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"

users=1000 rooms=10 messages=3 rate=20
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) users=50 rooms=5 messages=2 rate=20 ;;
    --users) users=${2:?--users needs a number}; shift ;;
    --rooms) rooms=${2:?--rooms needs a number}; shift ;;
    --messages) messages=${2:?--messages needs a number}; shift ;;
    --rate) rate=${2:?--rate needs messages per second}; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "chat-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "chat-bench: $*" >&2; exit 1; }
for n in "$users" "$rooms" "$messages"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "users, rooms and messages are whole numbers above 0, not '$n'"
done
if ! [[ $rate =~ ^[0-9]+(\.[0-9]+)?$ ]] || awk -v r="$rate" 'BEGIN { exit !(r <= 0) }'; then
  die "--rate is messages per second above 0, not '$rate'"
fi
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, PostgreSQL as its own user)"
for tool in ip setpriv curl cargo; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps)"
done
venv=${VENUE_SYNAPSE_VENV:-/opt/venue-synapse}
"$venv/bin/python" -c 'import psycopg2, synapse' 2>/dev/null ||
  die "no Synapse with psycopg2 in $venv (scripts/install-deps)"
pg_bin=$(find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -n 1)
[ -n "$pg_bin" ] || die "no PostgreSQL server (apt-get install postgresql)"
pg_bin=$(dirname "$pg_bin")
id postgres >/dev/null 2>&1 || die "no postgres user (apt-get install postgresql)"

# The generator first: a build failure leaves nothing behind.
cargo build --quiet -p venue-testbed --bin chat-load
load_bin=${CARGO_TARGET_DIR:-$PWD/target}/debug/chat-load
[ -x "$load_bin" ] || die "no $load_bin after the build"

outer_ip=10.233.251.1 chat_ip=10.233.251.2 port=8008
if ip -4 -o addr show | grep -q " $outer_ip/"; then
  die "$outer_ip is already on a link: is another chat-bench running?"
fi

id=$$
ns=vchat-$id outer=vcho$id inner=vchi$id
work=$(mktemp -d /tmp/chat-bench.XXXXXX)
synapse_pid='' pg_pid='' load_pid=''

stop() { # $1 pid, $2 signal: signal it, wait up to 10 s, then kill it
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
  kill "-$2" "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "$load_pid" TERM
  stop "$synapse_pid" TERM
  stop "$pg_pid" INT # PostgreSQL's fast shutdown
  # Whatever else this script started in its namespace.
  if ip netns list 2>/dev/null | grep -q "^$ns\b"; then
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  fi
  ip link del "$outer" 2>/dev/null || true
  if [ -n "${CHAT_BENCH_KEEP:-}" ]; then echo "chat-bench: kept $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The test host: a namespace on a /30 of its own; the load comes from this
# machine's end of the link, so nothing is routed.
ip netns add "$ns"
ip link add "$outer" type veth peer name "$inner"
ip link set "$inner" netns "$ns"
ip addr add "$outer_ip/30" dev "$outer"
ip link set "$outer" up
ip netns exec "$ns" ip addr add "$chat_ip/30" dev "$inner"
ip netns exec "$ns" ip link set "$inner" up
ip netns exec "$ns" ip link set lo up
in_ns() { ip netns exec "$ns" "$@"; }
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

# PostgreSQL: a fresh cluster, reached only through a socket in the work
# directory (no TCP), which only its owner and root can open.
chmod 0755 "$work"
mkdir -p "$work/pg" "$work/pgsock"
chown postgres: "$work/pg" "$work/pgsock"
chmod 0700 "$work/pgsock"
as_postgres "$pg_bin/initdb" --pgdata="$work/pg" --username=postgres --encoding=UTF8 \
  --locale=C --auth-local=trust --auth-host=reject >"$work/initdb.log" 2>&1 ||
  { cat "$work/initdb.log" >&2; die "initdb failed"; }
in_ns setpriv --reuid=postgres --regid=postgres --init-groups "$pg_bin/postgres" -D "$work/pg" \
  -c listen_addresses='' -c unix_socket_directories="$work/pgsock" -c unix_socket_permissions=0700 \
  >"$work/postgres.log" 2>&1 &
for _ in $(seq 100); do
  "$pg_bin/pg_isready" -q -h "$work/pgsock" -U postgres && break
  sleep 0.1
done
"$pg_bin/pg_isready" -q -h "$work/pgsock" -U postgres || { cat "$work/postgres.log" >&2; die "PostgreSQL did not start"; }
pg_pid=$(head -n 1 "$work/pg/postmaster.pid")
# The role and database nixpkgs' services.matrix-synapse expects by default,
# with the C collation Synapse insists on.
"$pg_bin/psql" -q -v ON_ERROR_STOP=1 -h "$work/pgsock" -U postgres -d postgres \
  -c 'CREATE ROLE "matrix-synapse" LOGIN' \
  -c "CREATE DATABASE \"matrix-synapse\" OWNER \"matrix-synapse\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"

# Synapse: a generated config (signing key and secrets), then ours over it.
mkdir -p "$work/synapse"
(
  cd "$work/synapse"
  "$venv/bin/python" -m synapse.app.homeserver --server-name venue.test --report-stats=no \
    --generate-config --config-path generated.yaml --data-directory "$work/synapse" >/dev/null
)
(umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$work/registration-secret")
cat >"$work/synapse/log.yaml" <<'EOF'
version: 1
formatters: {plain: {format: '%(asctime)s %(name)s %(levelname)s [%(request)s] %(message)s'}}
filters: {context: {(): synapse.logging.context.LoggingContextFilter, request: ""}}
handlers: {file: {class: logging.FileHandler, filename: synapse.log, formatter: plain, filters: [context]}}
root: {level: INFO, handlers: [file]}
disable_existing_loggers: false
EOF
# JSON is YAML. As modules/chat.nix sets it up over nixpkgs'
# services.matrix-synapse (PostgreSQL over its socket as matrix-synapse, an
# uncompressed client listener, no federation, registration off but for the
# shared secret, no passwords, no guests, no user directory, presence on,
# INFO logs) except: Synapse listens on the host's address itself (no nginx
# in front); the secret is read from a file (so the generated inline one is
# dropped); password hashing is cheap, because registering the users is
# setup, not the load; and joins to one room are not limited to 1/s
# (Synapse's default), since a talk's room fills at once.
cat >"$work/synapse/bench.yaml" <<EOF
{
  "public_baseurl": "http://$chat_ip:$port/",
  "listeners": [{"port": $port, "bind_addresses": ["$chat_ip"], "type": "http", "tls": false,
    "x_forwarded": false, "resources": [{"names": ["client"], "compress": false}]}],
  "database": {"name": "psycopg2", "args": {"user": "matrix-synapse", "database": "matrix-synapse",
    "host": "$work/pgsock", "cp_min": 5, "cp_max": 10}},
  "log_config": "$work/synapse/log.yaml",
  "media_store_path": "$work/synapse/media",
  "pid_file": "$work/synapse/synapse.pid",
  "enable_registration": false,
  "password_config": {"enabled": false},
  "allow_guest_access": false,
  "user_directory": {"enabled": false},
  "registration_shared_secret": null,
  "registration_shared_secret_path": "$work/registration-secret",
  "bcrypt_rounds": 4,
  "rc_joins_per_room": {"per_second": 1000, "burst_count": 1000},
  "presence": {"enabled": true},
  "federation_domain_whitelist": [],
  "trusted_key_servers": [],
  "suppress_key_server_warning": true,
  "report_stats": false
}
EOF
(
  cd "$work/synapse"
  exec env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
    ip netns exec "$ns" "$venv/bin/python" -m synapse.app.homeserver \
    -c generated.yaml -c bench.yaml >synapse.out 2>&1
) &
synapse_pid=$!
start=$SECONDS
until curl -sf --noproxy '*' -o /dev/null "http://$chat_ip:$port/_matrix/client/versions"; do
  kill -0 "$synapse_pid" 2>/dev/null || { tail -n 40 "$work/synapse/synapse.out" "$work/synapse/synapse.log" >&2; die "Synapse exited"; }
  [ $((SECONDS - start)) -lt 90 ] || { tail -n 40 "$work/synapse/synapse.log" >&2; die "Synapse did not answer in 90 s"; }
  sleep 0.2
done
echo "chat-bench: Synapse $("$venv/bin/python" -c 'import synapse; print(synapse.__version__)') on PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') up at http://$chat_ip:$port in $((SECONDS - start)) s"

# Every message of the run plus its setup has to fit in this much time.
max_seconds=$(awk -v u="$users" -v m="$messages" -v r="$rate" 'BEGIN { printf "%d", 120 + u / 5 + 2 * u * m / r }')
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$load_bin" --url "http://$chat_ip:$port" --secret-file "$work/registration-secret" \
  --users "$users" --rooms "$rooms" --messages "$messages" --rate "$rate" \
  --max-seconds "$max_seconds" --synapse-pid "$synapse_pid" --postgres-pid "$pg_pid" &
load_pid=$!
wait "$load_pid"
