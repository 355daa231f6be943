#!/usr/bin/env python3
"""What checking bytes read back from disk costs (issue 20): segments a
broker finds at start are CRC-checked by the first read that serves them
(storage/src/segment/check.rs). One release broker; --records 1 KiB records
into 4 partitions (karnak-bench produce, librdkafka), a clean restart, then
three raw-wire reads of the whole topic (karnak-bench consume):

  first      after the restart: every byte is checked on its way out
  second     the same bytes again: nothing left to check
  written    before the restart, of what this broker wrote (never checked)

each with the broker's CPU per GB and the wall time, beside the machine's
CRC-32C speed (karnak-bench limits). The page cache stays warm throughout
(the restart keeps it) and Arrow faces are off (their background builds
would share the CPU), so the rows differ by the checking alone.

  cargo build --release -p karnak-broker -p karnak-benches --bins
  compat-tests/.venv/bin/python benches/e2e/first_read_check.py [--records 2000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches" / "e2e"))
from kafka_vs import BENCH, KARNAK, bench, measured  # noqa: E402
from sql_bench import Broker  # noqa: E402


def consume(bootstrap: str, topic: str, records: int) -> dict:
    return bench("consume", "--bootstrap", bootstrap, "--topic", topic, "--partitions", "4",
                 "--connections", "2", "--records", str(records), "--duration", "120")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for b in (KARNAK, BENCH):
        if not b.exists():
            sys.exit(f"{b} missing: cargo build --release -p karnak-broker -p karnak-benches --bins")
    with tempfile.TemporaryDirectory(prefix="karnak-frc-") as tmp:
        limits = bench("limits", "--dir", tmp, "--seconds", "2")
        print(json.dumps({"crc32c_MBps": limits.get("limits", limits).get("crc32c_MBps")}))
        gb = a.records * 1024 / 1e9
        rows = {"written": [], "first": [], "second": []}
        for rnd in range(a.rounds):
            work = Path(tmp) / f"r{rnd}"
            work.mkdir()
            broker = Broker(KARNAK, work / "data", work / "broker.log",
                            "--log-segment-bytes", str(128 << 20), "--sql-arrow-faces", "false")
            topic = f"frc-{rnd}"
            bench("produce", "--client", "rdkafka", "--bootstrap", broker.bootstrap,
                  "--topic", topic, "--partitions", "4", "--record-size", "1024",
                  "--acks", "1", "--linger-ms", "5", "--batch-size", "1048576",
                  "--records", str(a.records), "--duration", "120")
            for name in ("written", "restart", "first", "second"):
                if name == "restart":
                    broker.stop()
                    broker = Broker(KARNAK, work / "data", work / "broker.log",
                                    "--log-segment-bytes", str(128 << 20), "--sql-arrow-faces", "false")
                    continue
                result, cpu, wall = measured(broker.proc.pid,
                                             lambda: consume(broker.bootstrap, topic, a.records))
                row = {"round": rnd, "read": name, "seconds": result["seconds"],
                       "MBps": round(gb * 1000 / result["seconds"], 1),
                       "broker_core_s_per_gb": round(cpu / gb, 3), "wall_s": round(wall, 2)}
                rows[name].append(row)
                print(json.dumps(row), flush=True)
            broker.stop()
    print("\n| read | MB/s | broker core-s/GB |\n|---|---|---|")
    for name in ("written", "first", "second"):
        mbps = [r["MBps"] for r in rows[name]]
        cpu = [r["broker_core_s_per_gb"] for r in rows[name]]
        print(f"| {name} | {min(mbps):,.0f}-{max(mbps):,.0f} | {min(cpu):.2f}-{max(cpu):.2f} |")


if __name__ == "__main__":
    main()
