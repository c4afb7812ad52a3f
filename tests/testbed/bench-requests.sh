#!/usr/bin/env bash
# Prints venue's API request figures against fake-hcloud: requests per
# server for `up` and `down` of a 50-server event (actions of 2 s, the
# client's real poll interval), the crash-test counts, and `up`/`down` with
# 20% of requests failing. The same tests assert the limits (cargo test runs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo test -q -p venue-agent --test cloud_resilience -- --nocapture 2>&1 \
  | grep -oE '(50 servers|crash test|20% faults).*|test result.*' || { echo "bench failed" >&2; exit 1; }
