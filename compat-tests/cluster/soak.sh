#!/usr/bin/env bash
# Random faults against a 3-broker Karnak cluster under a checked queue
# workload, for as long as asked (see soak.py for what it does and checks).
# Uses the venv scripts/test-all.sh makes, and target/release/karnak if built
# (else target/debug/karnak; --bin to choose). Run as root: the network cut
# needs a network namespace and iptables (--no-network leaves it out).
#
#   compat-tests/cluster/soak.sh --minutes 60
#   compat-tests/cluster/soak.sh --faults 8 --seed 1234
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="$here/../.venv/bin/python"
if [ ! -x "$py" ]; then
    echo "FAIL: $py is missing: run scripts/test-all.sh once (it makes the venv)" >&2
    exit 1
fi
exec "$py" "$here/soak.py" "$@"
