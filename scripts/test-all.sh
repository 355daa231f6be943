#!/usr/bin/env bash
# The one command that runs every test: Rust unit/integration tests, then the
# compatibility suite (real kcat, confluent-kafka and kafka-python clients plus
# raw sockets) against the built `karnak` binary.
#
# Needs: the Rust toolchain, python3 (3.9+), root (for apt-get, only if kcat
# is missing). Everything else is installed here.
#
# Env:
#   PYTEST_ARGS       extra pytest arguments (e.g. "-k kcat" or "test_restart.py")
#   KARNAK_TEST_TIMEOUT  per-test timeout in seconds (default 600)
#   KARNAK_TEST_WORKERS  pytest-xdist workers for the compat suite (default 2;
#                     every test has its own brokers, ports and dirs)
#   SKIP_CARGO=1      do not build or run cargo tests (use an existing binary)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
COMPAT="$ROOT/compat-tests"
VENV="$COMPAT/.venv"
START=$(date +%s)

section() {
    printf '\n==================== %s ====================\n' "$*"
}

# ---------------------------------------------------------------- (a) tools
section "system tools"
need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if ((${#need_apt[@]})); then
    echo "installing: ${need_apt[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}"
fi
command -v kcat >/dev/null || { echo "FATAL: kcat still missing" >&2; exit 1; }
command -v psql >/dev/null || { echo "FATAL: psql still missing" >&2; exit 1; }
python3 -c 'import venv, ensurepip' || { echo "FATAL: python3 venv support missing" >&2; exit 1; }
kcat -V 2>&1 | head -n 4 | tail -n 1
psql --version
python3 --version

# ---------------------------------------------------------------- (b) venv
section "python venv ($VENV)"
REQ_HASH="$( (python3 --version; cat "$COMPAT/requirements.txt") | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.requirements.sha256"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQ_HASH" ]; then
    echo "venv up to date"
else
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r "$COMPAT/requirements.txt"
    echo "$REQ_HASH" > "$STAMP"
fi
"$VENV/bin/python" -c 'import psycopg, asyncpg; print("psycopg", psycopg.__version__, "| asyncpg", asyncpg.__version__)'
"$VENV/bin/python" -c 'import confluent_kafka, kafka, pytest; print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0], "| kafka-python", kafka.__version__, "| pytest", pytest.__version__)'

# ---------------------------------------------------------------- (c)+(d) cargo
if [ "${SKIP_CARGO:-0}" != "1" ]; then
    section "cargo fmt --check"
    cargo fmt --all -- --check
    section "cargo clippy -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings
    section "cargo build --workspace --bins"
    cargo build --workspace --bins
    section "cargo test --workspace"
    cargo test --workspace
else
    section "cargo skipped (SKIP_CARGO=1)"
fi

KARNAK_BIN="${KARNAK_BIN:-$ROOT/target/debug/karnak}"
export KARNAK_BIN
[ -x "$KARNAK_BIN" ] || { echo "FATAL: $KARNAK_BIN not built" >&2; exit 1; }

# ---------------------------------------------------------------- (e) compat
# The load tool's idle test holds 10,000 connections: both it and the
# broker need an open-files limit above that (raise soft to hard).
NOFILE_HARD="$(ulimit -Hn)"
[ "$NOFILE_HARD" = unlimited ] && NOFILE_HARD=1048576
ulimit -n "$NOFILE_HARD" || echo "warning: open-files limit stays at $(ulimit -n)" >&2
section "compat tests (pytest) against $KARNAK_BIN"
cd "$COMPAT"
set +e
# shellcheck disable=SC2086
"$VENV/bin/python" -m pytest -v -p no:cacheprovider \
    -n "${KARNAK_TEST_WORKERS:-2}" --dist load \
    --timeout="${KARNAK_TEST_TIMEOUT:-600}" --durations=15 \
    ${PYTEST_ARGS:-}
rc=$?
set -e
cd "$ROOT"

section "done in $(( $(date +%s) - START ))s"
if [ "$rc" -eq 5 ]; then
    echo "FAIL: pytest collected no tests" >&2
    exit 1
elif [ "$rc" -ne 0 ]; then
    echo "FAIL: compat tests failed (pytest exit code $rc)" >&2
    exit "$rc"
fi
echo "all tests passed"
