#!/usr/bin/env bash
# The one command that runs every test: Rust unit/integration tests (with the
# deterministic simulation's fixed seeds, sim/), then the
# compatibility suite (real kcat, confluent-kafka and kafka-python clients plus
# raw sockets) against the built `karnak` binary.
#
# Needs: the Rust toolchain, python3 (3.9+), root (for apt-get when a
# package is missing, and for the cluster's network partition test, which
# makes its own network namespace and iptables rules). Everything else is
# installed here.
#
# Env:
#   PYTEST_ARGS       extra pytest arguments (e.g. "-k kcat" or "test_restart.py")
#   KARNAK_TEST_TIMEOUT  per-test timeout in seconds (default 600)
#   KARNAK_TEST_WORKERS  pytest-xdist workers for the compat suite (default 2;
#                     every test has its own brokers, ports and dirs)
#   SKIP_CARGO=1      do not build or run cargo tests (use an existing binary)
#   JAVA_TEST_ARGS    extra Maven arguments for the Java compat suite (compat-tests/java)
#   SKIP_JAVA=1       do not run the Java compat suite (local use)
#   SKIP_FUZZ=1       do not run the fuzz targets (local use)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
COMPAT="$ROOT/compat-tests"
VENV="$COMPAT/.venv"
START=$(date +%s)

# Each heading says when it starts (seconds into the run): CI's log then
# shows what each stage cost.
section() {
    printf '\n==================== %s (at %ss) ====================\n' "$*" "$(( $(date +%s) - START ))"
}

# ---------------------------------------------------------------- (a) tools
section "system tools"
need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# test_old_clients.py: Debian's kafka-python 2.0.2 (for /usr/bin/python3) and its snappy/lz4 codecs
/usr/bin/python3 -c 'import kafka, snappy, lz4.frame, xxhash' >/dev/null 2>&1 \
    || need_apt+=(python3-kafka python3-snappy python3-lz4 python3-xxhash)
# test_old_clients.py builds its Sarama / kafka-go driver (modules from the Go module proxy)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
# the TLS and SASL tests make their certificates and sign their tokens with openssl
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# the cluster's network partition test (broker/tests/cluster/partition.rs) cuts links with iptables
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
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
/usr/bin/python3 -c 'import kafka, snappy, lz4.frame, xxhash' \
    || { echo "FATAL: python3-kafka / python3-snappy / python3-lz4 / python3-xxhash missing" >&2; exit 1; }
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

# The fuzz targets' build (nightly, AddressSanitizer: every dependency again)
# runs in the background from here on, at the lowest CPU and I/O priority:
# the tests below leave the cores idle much of the time (clients waiting on
# brokers, timeouts), and the build fills those gaps instead of taking 5
# minutes of its own at the end. Its output is shown at the fuzz stage.
FUZZ_BUILD_PID=""
FUZZ_BUILD_LOG="$ROOT/fuzz/logs/build.log"
start_fuzz_build() {
    [ "${SKIP_FUZZ:-0}" = "1" ] && return 0
    mkdir -p "$(dirname "$FUZZ_BUILD_LOG")"
    echo "building the fuzz targets in the background (log: $FUZZ_BUILD_LOG)"
    local idle_io=()
    ionice -c 3 true 2>/dev/null && idle_io=(ionice -c 3)
    nice -n 19 "${idle_io[@]}" "$ROOT/fuzz/run-all.sh" --ci --build-only > "$FUZZ_BUILD_LOG" 2>&1 &
    FUZZ_BUILD_PID=$!
}

# ---------------------------------------------------------------- (c)+(d) cargo
if [ "${SKIP_CARGO:-0}" != "1" ]; then
    section "cargo fmt --check"
    cargo fmt --all -- --check
    # Clippy's lints run inside the build, as `cargo clippy` runs them in a
    # check: clippy-driver wraps rustc for the workspace's own crates. One
    # compile then gives the lints, the binaries and the tests, where
    # `cargo clippy` followed by `cargo build` compiled every dependency
    # twice (a check, then a build: 12.5 of CI's minutes). The same as
    # `cargo clippy --workspace --all-targets -- -D warnings`.
    clippy=(env RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
            CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
    section "cargo build --workspace --all-targets, clippy -D warnings"
    "${clippy[@]}" cargo build --workspace --all-targets
    start_fuzz_build
    section "cargo test --workspace"
    "${clippy[@]}" cargo test --workspace
else
    start_fuzz_build
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

# ---------------------------------------------------------------- (f) Java compat
# The Java client 4.4.0 (producer, consumers, transactions, AdminClient) against the same binary, plus
# differential tests against a real Apache Kafka 4.4.0 broker started from the Maven artifacts
# (compat-tests/java). Maven fills ~/.m2 on the first run (about 150 MB). Any failure, including
# Maven not resolving or no test running, fails this script.
#   JAVA_TEST_ARGS   extra Maven arguments (e.g. "-Dtest=AdminClientTest" or "-DexcludedGroups=none")
#   SKIP_JAVA=1      do not run the Java suite (reported as a failure-free skip, for local use only)
java_rc=0
if [ "${SKIP_JAVA:-0}" = "1" ]; then
    section "Java compat tests skipped (SKIP_JAVA=1)"
    java_rc=skipped
else
    section "compat tests (Java, Maven) against $KARNAK_BIN"
    JAVA_START=$(date +%s)
    set +e
    if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
        echo "FAIL: java and mvn are needed for compat-tests/java" >&2
        java_rc=127
    else
        java -version 2>&1 | head -n 1
        # shellcheck disable=SC2086
        mvn -B -ntp -Dstyle.color=never -f "$COMPAT/java/pom.xml" test -Dkarnak.bin="$KARNAK_BIN" ${JAVA_TEST_ARGS:-}
        java_rc=$?
    fi
    set -e
    echo "Java compat tests: exit code $java_rc in $(( $(date +%s) - JAVA_START ))s"
fi

# ---------------------------------------------------------------- (g) fuzz
# Every fuzz target (fuzz/, cargo fuzz on the nightly toolchain) for 60 s from
# its seed corpus; a crash, hang or allocation past the stated bounds fails
# the run. Long runs: fuzz/run-all.sh (see fuzz/RESULTS.md).
#   SKIP_FUZZ=1      do not run them (local use)
fuzz_rc=0
if [ "${SKIP_FUZZ:-0}" = "1" ]; then
    section "fuzz targets skipped (SKIP_FUZZ=1)"
    fuzz_rc=skipped
else
    section "fuzz targets, 60 s each"
    FUZZ_START=$(date +%s)
    set +e
    build_rc=0
    if [ -n "$FUZZ_BUILD_PID" ]; then
        wait "$FUZZ_BUILD_PID"
        build_rc=$?
        tail -n 5 "$FUZZ_BUILD_LOG"
        echo "fuzz build (background): exit code $build_rc"
    fi
    if [ "$build_rc" -ne 0 ]; then
        cat "$FUZZ_BUILD_LOG"
        fuzz_rc=$build_rc
    else
        "$ROOT/fuzz/run-all.sh" --ci
        fuzz_rc=$?
    fi
    set -e
    echo "fuzz targets: exit code $fuzz_rc in $(( $(date +%s) - FUZZ_START ))s"
fi

section "done in $(( $(date +%s) - START ))s"
fail=0
if [ "$rc" -eq 5 ]; then
    echo "FAIL: pytest collected no tests" >&2
    fail=1
elif [ "$rc" -ne 0 ]; then
    echo "FAIL: compat tests failed (pytest exit code $rc)" >&2
    fail=1
else
    echo "pytest compat tests passed"
fi
if [ "$java_rc" = skipped ]; then
    echo "Java compat tests skipped (SKIP_JAVA=1)"
elif [ "$java_rc" -ne 0 ]; then
    echo "FAIL: Java compat tests failed (mvn exit code $java_rc)" >&2
    fail=1
else
    echo "Java compat tests passed"
fi
if [ "$fuzz_rc" = skipped ]; then
    echo "fuzz targets skipped (SKIP_FUZZ=1)"
elif [ "$fuzz_rc" -ne 0 ]; then
    echo "FAIL: a fuzz target failed (fuzz/logs/, fuzz/artifacts/)" >&2
    cat "$ROOT/fuzz/logs/failures.txt" >&2 2>/dev/null || true
    fail=1
else
    echo "fuzz targets passed"
fi
if [ "$fail" -ne 0 ]; then
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
    exit 1
fi
echo "all tests passed"
