# Synapse's secrets from the agent's files (argv[1] is the secrets
# directory), as modules/chat.nix renders them: each value trimmed, a
# whitespace-only one refused; printed as a YAML (JSON) file for
# Synapse's second -c. Never on a command line.
import json
import os
import sys

secrets = sys.argv[1]
keys = {
    "macaroon_secret_key": "synapse-macaroon-secret",
    "form_secret": "synapse-form-secret",
    "registration_shared_secret": "synapse-registration-secret",
}
out = {}
for key, name in keys.items():
    path = os.path.join(secrets, name)
    with open(path) as f:
        value = f.read().strip()
    if not value:
        sys.exit(f"{path} holds only whitespace: refusing to start")
    out[key] = value
json.dump(out, sys.stdout)
