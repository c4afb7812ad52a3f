# Takes the host key from user_data and root's keys from Hetzner's metadata
# service. Fails (and sshd starts with the key on disk, which the agent then
# refuses) rather than generating a key nobody pinned.
# Wrapped by writeShellApplication (modules/hetzner.nix), whose shellcheck
# scripts/test runs too. Arguments: the metadata address, the host key path.
umask 077
base=http://$1/hetzner/v1
key=$2
work=$(mktemp -d /run/venue-host-key.XXXXXX)
trap 'rm -rf "$work"' EXIT

fetch() {
  for _ in $(seq 1 30); do
    if curl -fsS --max-time 5 "$base/$1" -o "$2"; then return 0; fi
    sleep 2
  done
  echo "metadata service: no answer for /hetzner/v1/$1" >&2
  return 1
}

fetch userdata "$work/userdata"
# The block below `ed25519_private: |`, de-indented (keys.rs writes it).
awk '/^ +ed25519_private: \|/ { on = 1; match($0, /^ */); ind = RLENGTH; next }
     on { match($0, /^ */); if (RLENGTH <= ind || $0 ~ /^ *$/) exit; sub(/^ +/, ""); print }' \
  "$work/userdata" > "$work/key"
if ! grep -q -- '-----BEGIN OPENSSH PRIVATE KEY-----' "$work/key"; then
  echo "user_data has no ssh_keys.ed25519_private block: keeping the host key on disk" >&2
  exit 1
fi
ssh-keygen -y -f "$work/key" > "$work/key.pub"
if ! cmp -s "$work/key" "$key"; then
  install -D -m 0600 "$work/key" "$key"
  install -m 0644 "$work/key.pub" "$key.pub"
  echo "host key from user_data installed: $(ssh-keygen -lf "$key.pub")"
fi

# Root's keys: the ssh_keys the server was created with, which for a
# snapshot boot are this event's, not those of the image build.
fetch metadata "$work/metadata"
awk '/^public-keys:/ { on = 1; next } on && /^[^ -]/ { exit }
     on && /^ *- / { sub(/^ *- */, ""); gsub(/^["\x27]|["\x27]$/, ""); print }' \
  "$work/metadata" > "$work/authorized_keys"
if [ -s "$work/authorized_keys" ] && ! cmp -s "$work/authorized_keys" /root/.ssh/authorized_keys; then
  install -d -m 0700 /root/.ssh
  install -m 0600 "$work/authorized_keys" /root/.ssh/authorized_keys
  echo "root's authorized keys from the metadata: $(wc -l < "$work/authorized_keys")"
fi
