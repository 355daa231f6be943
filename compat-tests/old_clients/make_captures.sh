#!/usr/bin/env bash
# Regenerates protocol/tests/captures/*.bin: each old client is pointed at
# capture_proxy.py (fake-broker mode for the data path, proxy mode in front of
# karnak for Sarama's admin requests) and the legacy request frames it sends are
# saved. Deterministic contents: topic `legacy`, partition 0, keys k0..k3,
# values v0..v3 (see protocol/tests/captures/README.md for each file).
#
# Needs: /usr/bin/python3 with python3-kafka, -snappy, -lz4, -xxhash (Debian),
# kcat, go (Sarama 1.22.1 and kafka-go 0.2.1 from the module proxy), and for the
# admin captures the karnak binary (KARNAK_BIN, default target/debug/karnak).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${CAPTURE_OUT:-$ROOT/protocol/tests/captures}"
KARNAK_BIN="${KARNAK_BIN:-$ROOT/target/debug/karnak}"
PY=/usr/bin/python3
PROXY="$HERE/capture_proxy.py"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$OUT"

echo "building the Go driver"
(cd "$HERE/sarama" && go build -o "$TMP/oldgo" .)

# start_capture MODE LABEL APIS [proxy args...] -> sets ADDR, CAP_PID
start_capture() {
    local mode=$1 label=$2 apis=$3
    shift 3
    local log="$TMP/$label.log"
    python3 "$PROXY" "$mode" --client "$label" --out "$OUT" ${apis:+--apis "$apis"} "$@" >"$log" 2>&1 &
    CAP_PID=$!
    PIDS+=("$CAP_PID")
    local deadline=$((SECONDS + 10))
    while ! grep -qs "^listening on " "$log"; do
        ((SECONDS < deadline)) || { echo "capture proxy did not start: $(cat "$log")" >&2; exit 1; }
        sleep 0.05
    done
    ADDR="$(sed -n 's/^listening on //p' "$log")"
}
stop_capture() {
    kill "$CAP_PID" 2>/dev/null || true
    wait "$CAP_PID" 2>/dev/null || true
    grep '^captured' "$TMP/$1.log" | sed "s#$OUT/##" || true
}

# ---------------------------------------------------------------- kafka-python 2.0.2
kp() {  # kp LABEL APIS API_VERSION CODEC
    start_capture fake "$1" "$2"
    "$PY" "$HERE/kafka_python_old.py" --bootstrap "$ADDR" --topic legacy --group legacy-group \
        --api-version "$3" --codec "$4" --n 4 --consume-timeout 2 --deadline 60 >"$TMP/$1.json"
    stop_capture "$1"
}
kp kafka-python-2.0.2-api0.8.1 OffsetCommit,OffsetFetch 0.8.1 none
kp kafka-python-2.0.2-api0.8.2 "" 0.8.2 none
kp kafka-python-2.0.2-api0.9 "" 0.9 none
kp kafka-python-2.0.2-api0.10.0 "" 0.10.0 none
kp kafka-python-2.0.2-api0.10.1 "" 0.10.1 none
for api in 0.8.2 0.9 0.10.0; do
    for codec in gzip snappy lz4; do
        kp "kafka-python-2.0.2-api$api-$codec" Produce "$api" "$codec"
    done
done

# ---------------------------------------------------------------- kcat 1.7.1 / librdkafka 2.0.2
kc() {  # kc LABEL APIS FALLBACK CODEC
    start_capture fake "$1" "$2"
    printf 'k0:v0\nk1:v1\nk2:v2\nk3:v3\n' | timeout 30 kcat -b "$ADDR" -X api.version.request=false \
        -X broker.version.fallback="$3" -X linger.ms=100 -P -t legacy -p 0 -K: -z "$4"
    if [ "$2" = "" ]; then
        timeout 30 kcat -b "$ADDR" -X api.version.request=false -X broker.version.fallback="$3" \
            -C -t legacy -p 0 -o beginning -c 1 -q -X fetch.wait.max.ms=100 >/dev/null &
        local kpid=$!
        local deadline=$((SECONDS + 10))
        while ! ls "$OUT"/Fetch_v*_"$1".bin >/dev/null 2>&1; do
            ((SECONDS < deadline)) || break
            sleep 0.05
        done
        kill "$kpid" 2>/dev/null || true
        wait "$kpid" 2>/dev/null || true
    fi
    stop_capture "$1"
}
for fb in 0.8.2.2 0.9.0.1 0.10.0.1; do
    kc "kcat-1.7.1-fallback$fb" "" "$fb" none
    for codec in gzip snappy lz4; do
        kc "kcat-1.7.1-fallback$fb-$codec" Produce "$fb" "$codec"
    done
done

# ---------------------------------------------------------------- Sarama 1.22.1
sa() {  # sa LABEL APIS VERSION CODEC
    start_capture fake "$1" "$2"
    "$TMP/oldgo" sarama -bootstrap "$ADDR" -topic legacy -group legacy-group -version "$3" \
        -codec "$4" -n 4 -consume-timeout 2s -deadline 60s >"$TMP/$1.json"
    stop_capture "$1"
}
sa sarama-1.22.1-v0.8.2.0 "" 0.8.2.0 none
sa sarama-1.22.1-v0.10.0.0 "" 0.10.0.0 none
sa sarama-1.22.1-v0.10.2.0 Fetch 0.10.2.0 none
for codec in gzip snappy; do
    sa "sarama-1.22.1-v0.8.2.0-$codec" Produce 0.8.2.0 "$codec"
done
for codec in gzip snappy lz4; do
    sa "sarama-1.22.1-v0.10.0.0-$codec" Produce 0.10.0.0 "$codec"
done

# ---------------------------------------------------------------- kafka-go 0.2.1
kg() {  # kg LABEL APIS CODEC
    start_capture fake "$1" "$2"
    "$TMP/oldgo" kafkago -bootstrap "$ADDR" -topic legacy -codec "$3" -n 4 -consume-timeout 2s \
        -deadline 60s >"$TMP/$1.json"
    stop_capture "$1"
}
kg kafka-go-0.2.1 "" none
for codec in gzip snappy lz4; do
    kg "kafka-go-0.2.1-$codec" Produce "$codec"
done

# ---------------------------------------------------------------- Sarama's ClusterAdmin, through karnak
# (the fake broker does not answer DescribeConfigs or the ACL APIs: proxy mode in front of karnak)
if [ -x "$KARNAK_BIN" ]; then
    for v in 0.10.2.0 0.11.0.0; do
        label="sarama-1.22.1-admin-v$v"
        kport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        start_capture proxy "$label" "" --upstream "127.0.0.1:$kport"
        "$KARNAK_BIN" --data-dir "$TMP/karnak-$v" --kafka-addr "127.0.0.1:$kport" \
            --advertised-kafka-addr "$ADDR" --admin-addr 127.0.0.1:0 --sql-enabled false \
            --auto-create-topics false >"$TMP/karnak-$v.log" 2>&1 &
        KPID=$!
        PIDS+=("$KPID")
        deadline=$((SECONDS + 60))
        until grep -q "serving Kafka on 127.0.0.1:$kport " "$TMP/karnak-$v.log"; do
            ((SECONDS < deadline)) || { echo "karnak did not start: $(tail "$TMP/karnak-$v.log")" >&2; exit 1; }
            sleep 0.05
        done
        "$TMP/oldgo" sarama-admin -bootstrap "$ADDR" -topic legacy -version "$v" -deadline 60s \
            >"$TMP/$label.json"
        kill "$KPID"
        wait "$KPID" 2>/dev/null || true
        stop_capture "$label"
    done
else
    echo "no karnak binary at $KARNAK_BIN: Sarama admin captures skipped" >&2
fi
echo "captures in $OUT: $(ls "$OUT"/*.bin | wc -l) files"
