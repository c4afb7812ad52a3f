# Every room's history on this homeserver as one JSON file, for the event's
# archive (modules/chat.nix, run as root by `venue archive`):
#
#   venue-chat-export-rooms HOMESERVER SECRET_FILE TOKEN_FILE OUT
#
# { "homeserver": URL, "exported_at": ms, "rooms": [ { "room_id", "alias",
#   "name", "topic", "events": [ { "sender", "type", "content",
#   "origin_server_ts" }, … oldest first ] }, … ] }
#
# Through Synapse's admin API on HOMESERVER (loopback): the rooms
# (`/_synapse/admin/v1/rooms`, by offset), each room's details (its topic)
# and its events (`/_synapse/admin/v1/rooms/<id>/messages`, forwards from
# the start, by token). The admin is an account of its own registered with
# the shared secret (`/_synapse/admin/v1/register`: mac = HMAC-SHA1 of
# nonce, user, password and "admin", NUL-separated), once: its token is kept
# in TOKEN_FILE (0600) and checked with whoami before each export. The
# secret and the token are read from files and handed to curl in a private
# directory, never on a command line, and never printed.
if [ $# -ne 4 ]; then
  echo "usage: venue-chat-export-rooms HOMESERVER SECRET_FILE TOKEN_FILE OUT" >&2
  exit 2
fi
homeserver=${1%/}
secret_file=$2
token_file=$3
out=$4

umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# curl with the admin's token (a config file: not on the command line).
api() {
  curl --silent --show-error --fail --max-time 60 --config "$work/auth" "$homeserver$1"
}

# Lower-case hex of stdin's bytes.
hex() {
  od -An -v -tx1 | tr -d ' \n'
}

# printf '%b' input for the bytes of a hex string.
escaped() {
  local h=$1 i e out=""
  for ((i = 0; i < ${#h}; i += 2)); do
    printf -v e '\\x%s' "${h:i:2}"
    out+=$e
  done
  printf '%s' "$out"
}

# HMAC-SHA1 (RFC 2104) of stdin with the key in the variable `key`, as hex.
hmac_sha1() {
  local key_hex ipad="" opad="" i b e inner
  key_hex=$(printf '%s' "$key" | hex)
  # A key longer than SHA-1's 64-byte block is hashed first.
  if [ ${#key_hex} -gt 128 ]; then
    key_hex=$(printf '%s' "$key" | sha1sum | cut -c1-40)
  fi
  while [ ${#key_hex} -lt 128 ]; do
    key_hex+=00
  done
  for ((i = 0; i < 128; i += 2)); do
    b=$((16#${key_hex:i:2}))
    printf -v e '\\x%02x' $((b ^ 0x36))
    ipad+=$e
    printf -v e '\\x%02x' $((b ^ 0x5c))
    opad+=$e
  done
  inner=$({ printf '%b' "$ipad"; cat; } | sha1sum | cut -c1-40)
  { printf '%b' "$opad"; printf '%b' "$(escaped "$inner")"; } | sha1sum | cut -c1-40
}

# A new admin account and its token (into TOKEN_FILE).
register_admin() {
  local key nonce user password mac
  key=$(<"$secret_file")
  # Trimmed, as modules/chat.nix hands it to Synapse.
  key=${key#"${key%%[![:space:]]*}"}
  key=${key%"${key##*[![:space:]]}"}
  if [ ${#key} -lt 16 ]; then
    echo "$secret_file is missing or too short: cannot register the archive's admin" >&2
    exit 1
  fi
  nonce=$(curl --silent --show-error --fail --max-time 30 "$homeserver/_synapse/admin/v1/register" | jq -r .nonce)
  if ! [[ $nonce =~ ^[A-Za-z0-9]+$ ]]; then
    echo "$homeserver gave no registration nonce" >&2
    exit 1
  fi
  # A new name each time: an earlier account's token may be lost, and
  # password logins are off.
  user=venue-archive-$(head -c 6 /dev/urandom | hex)
  password=$(head -c 24 /dev/urandom | hex)
  mac=$(printf '%s\0%s\0%s\0admin' "$nonce" "$user" "$password" | hmac_sha1)
  printf '{"nonce":"%s","username":"%s","password":"%s","admin":true,"mac":"%s"}' \
    "$nonce" "$user" "$password" "$mac" >"$work/register.json"
  curl --silent --show-error --fail --max-time 30 \
    --header 'Content-Type: application/json' --data-binary "@$work/register.json" \
    "$homeserver/_synapse/admin/v1/register" >"$work/registered.json"
  jq -er .access_token <"$work/registered.json" >"$token_file.new"
  mv "$token_file.new" "$token_file"
  echo "registered $user as the archive's admin" >&2
}

write_auth() {
  local token
  token=$(<"$token_file")
  printf 'header = "Authorization: Bearer %s"\n' "$token" >"$work/auth"
}

mkdir -p "$(dirname "$token_file")"
if [ -s "$token_file" ]; then
  write_auth
fi
if ! [ -s "$token_file" ] || ! api /_matrix/client/v3/account/whoami >/dev/null 2>&1; then
  register_admin
  write_auth
fi

# Every room id, by offset.
: >"$work/room-ids"
from=0
while [ -n "$from" ]; do
  api "/_synapse/admin/v1/rooms?from=$from&limit=100" >"$work/page.json"
  jq -r '.rooms[].room_id' <"$work/page.json" >>"$work/room-ids"
  from=$(jq -r '.next_batch // empty' <"$work/page.json")
done

: >"$work/rooms.jsonl"
while read -r room; do
  id=$(jq -rn --arg r "$room" '$r | @uri')
  api "/_synapse/admin/v1/rooms/$id" >"$work/room.json"
  : >"$work/events.jsonl"
  batch=""
  while :; do
    query="dir=f&limit=1000"
    if [ -n "$batch" ]; then
      query+="&from=$(jq -rn --arg b "$batch" '$b | @uri')"
    fi
    api "/_synapse/admin/v1/rooms/$id/messages?$query" >"$work/messages.json"
    jq -c '.chunk[] | {sender, type, content, origin_server_ts}' <"$work/messages.json" >>"$work/events.jsonl"
    # No `end`, or nothing more: the room's newest event was reached.
    next=$(jq -r 'if (.chunk | length) > 0 then .end // empty else empty end' <"$work/messages.json")
    if [ -z "$next" ] || [ "$next" = "$batch" ]; then
      break
    fi
    batch=$next
  done
  jq -c --slurpfile events "$work/events.jsonl" \
    '{room_id, alias: .canonical_alias, name, topic, events: $events}' \
    <"$work/room.json" >>"$work/rooms.jsonl"
done <"$work/room-ids"

jq -s --arg homeserver "$homeserver" --argjson now "$(($(date +%s) * 1000))" \
  '{homeserver: $homeserver, exported_at: $now, rooms: .}' \
  <"$work/rooms.jsonl" >"$out.new"
mv "$out.new" "$out"
echo "exported $(wc -l <"$work/room-ids") room(s) to $out" >&2
