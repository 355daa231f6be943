#!/usr/bin/env bash
# Builds every fuzz target (cargo fuzz: libFuzzer, AddressSanitizer, nightly)
# and runs each from its seed corpus, two at a time, with the bounds the
# hardening issue states: an input that crashes, hangs (-timeout) or holds
# more memory than -rss_limit_mb / allocates a block over -malloc_limit_mb
# fails the run and is kept under fuzz/artifacts/<target>/.
#
#   fuzz/run-all.sh            each target for 1 hour or 10 million runs,
#                              whichever ends first; rows for fuzz/RESULTS.md
#   fuzz/run-all.sh --ci       each target for 60 s, built unoptimised (what
#                              .ci/run runs: the optimised ASan build takes
#                              20 minutes here, the unoptimised one 5)
#   fuzz/run-all.sh -t SECS [--runs N] [--dev] [TARGET ...]
#                              (--dev: the CI build, see Cargo.toml)
#   fuzz/run-all.sh --ci --build-only
#                              build and stop (scripts/test-all.sh builds in
#                              the background, niced, while the compat tests run)
#   fuzz/run-all.sh --no-build ...
#                              run what the last build left (a long run of a
#                              commit while the tree moves on)
#
# New inputs go to fuzz/work/<target>/ (not committed); fuzz/corpus/<target>/
# holds the seeds. Exit status: 0 when no target found anything.
set -euo pipefail

FUZZ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ"
SECS=3600
RUNS=10000000
JOBS=2
BUILD=(-O --debug-assertions)
PROFILE=release
BUILD_ONLY=0
NO_BUILD=0
targets=()
while (($#)); do
    case "$1" in
        --ci) SECS=60; RUNS=-1; BUILD=(--dev); PROFILE=debug ;;
        --dev) BUILD=(--dev); PROFILE=debug ;;
        --build-only) BUILD_ONLY=1 ;;
        --no-build) NO_BUILD=1 ;;
        -t) SECS="$2"; shift ;;
        --runs) RUNS="$2"; shift ;;
        -j) JOBS="$2"; shift ;;
        *) targets+=("$1") ;;
    esac
    shift
done

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
rustup toolchain list | grep -q '^nightly' \
    || { echo "FATAL: the nightly toolchain is needed (cargo fuzz builds with -Zsanitizer)" >&2; exit 1; }
[ "$NO_BUILD" = 1 ] || cargo +nightly fuzz build "${BUILD[@]}"
[ "$BUILD_ONLY" = 1 ] && exit 0
BIN="$FUZZ/target/x86_64-unknown-linux-gnu/$PROFILE"
((${#targets[@]})) || mapfile -t targets < <(cargo +nightly fuzz list)

mkdir -p work artifacts logs
run_one() {
    local t="$1"
    mkdir -p "work/$t" "corpus/$t" "artifacts/$t"
    # -rss_limit_mb: resident memory of the whole fuzzer; -malloc_limit_mb:
    # any one allocation (the broker's allocator maps blocks of 64 MiB and
    # more without reserve, see karnak_protocol::alloc: those are address
    # space, not memory, and do not count here).
    local extra=()
    # A whole broker keeps its runtime's threads and state between inputs:
    # LeakSanitizer's check after an input sees other threads' buffers in
    # flight as leaks. Its memory is bounded by -rss_limit_mb instead.
    [ "$t" = broker_requests ] && extra+=(-detect_leaks=0)
    "$BIN/$t" "work/$t" "corpus/$t" "${extra[@]}" \
        -max_total_time="$SECS" -runs="$RUNS" \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        > "logs/$t.log" 2>&1
}
running=0
for t in "${targets[@]}"; do
    rm -f "logs/$t.rc"
    (
        rc=0
        run_one "$t" || rc=$?
        echo "$rc" > "logs/$t.rc"
    ) &
    running=$((running + 1))
    if ((running >= JOBS)); then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
failed=()
for t in "${targets[@]}"; do
    [ "$(cat "logs/$t.rc" 2>/dev/null)" = 0 ] || failed+=("$t")
done

printf '| target | executions | coverage (edges) | features | corpus | result |\n|---|---:|---:|---:|---:|---|\n'
for t in "${targets[@]}"; do
    log="logs/$t.log"
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || echo -)
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || echo -)
    corp=$(grep -o 'corp: [0-9]*' <<<"$last" | grep -o '[0-9]*$' || echo -)
    result=ok
    if printf '%s\n' "${failed[@]}" | grep -qx "$t"; then
        result="FAILED: $(grep -m1 -oE 'ERROR: [^(]*|panicked at [^:]*:[0-9]*' "$log" || echo 'see log') (fuzz/logs/$t.log, fuzz/artifacts/$t/)"
    fi
    printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$runs" "$cov" "$ft" "$corp" "$result"
done
# What each failure was, short enough to survive a CI log's tail
# (scripts/test-all.sh prints this file last): the sanitizer's or
# libFuzzer's own error line, the panic, the input that did it, and that
# input in base64 when it is small enough to paste into a regression file.
rm -f logs/failures.txt
for t in "${failed[@]}"; do
    {
        echo "== $t (fuzz/logs/$t.log)"
        grep -m 8 -E 'ERROR: |panicked at|SUMMARY: |Test unit written|slowest unit|out-of-memory|malloc\(' "logs/$t.log" || tail -n 8 "logs/$t.log"
        for a in artifacts/"$t"/*; do
            [ -f "$a" ] || continue
            if [ "$(stat -c %s "$a")" -le 3000 ]; then
                echo "$a base64: $(base64 -w0 "$a")"
            else
                echo "$a: $(stat -c %s "$a") bytes"
            fi
        done
    } >> logs/failures.txt
done
if ((${#failed[@]})); then
    cat logs/failures.txt >&2
    echo "FAIL: ${failed[*]}" >&2
    exit 1
fi
