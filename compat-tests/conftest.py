"""Fixtures that run the real `karnak` binary for the compatibility tests.

Every broker gets its own free Kafka and admin ports and a fresh data dir, so
test modules (and tests) can run in parallel and never share state, except the
module-scoped `shared_broker` used by cheap read-only tests.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))

START_TIMEOUT = float(os.environ.get("KARNAK_START_TIMEOUT", "60"))
STOP_TIMEOUT = float(os.environ.get("KARNAK_STOP_TIMEOUT", "30"))


def karnak_binary() -> Path:
    env = os.environ.get("KARNAK_BIN")
    return Path(env) if env else REPO_ROOT / "target" / "debug" / "karnak"


@pytest.fixture(scope="session")
def karnak_bin() -> Path:
    p = karnak_binary()
    if not p.is_file() or not os.access(p, os.X_OK):
        pytest.fail(
            f"karnak binary not found or not executable at {p} "
            "(build it with `cargo build --bins` or set KARNAK_BIN)",
            pytrace=False,
        )
    return p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_topic(prefix="t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict:
    """-> {(name, frozenset(labels.items())): float}"""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$", line)
        if not m:
            raise AssertionError(f"unparseable metrics line: {line!r}")
        name, labels_s, value = m.group(1), m.group(3) or "", m.group(4)
        labels = {k: v.encode().decode("unicode_escape") for k, v in _LABEL_RE.findall(labels_s)}
        out[(name, frozenset(labels.items()))] = float(value)
    return out


class Metrics(dict):
    def get_value(self, name, **labels):
        """Value of the series with exactly these labels (or None)."""
        return self.get((name, frozenset((k, str(v)) for k, v in labels.items())))

    def find(self, name, **labels):
        """All series of `name` whose labels include `labels`."""
        want = {(k, str(v)) for k, v in labels.items()}
        return {lbl: v for (n, lbl), v in self.items() if n == name and want <= lbl}


class Broker:
    """One karnak process. Ports and data dir survive restart()."""

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, extra_args=(), node_id=0,
                 env=None, uid=None):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.extra_args = list(extra_args)
        self.node_id = node_id
        self.env = env or {}
        # Run as this user (root only): network faults tell brokers apart by
        # the user owning their connections (cluster_workload.py).
        self.uid = uid
        self.kafka_port = None
        self.admin_port = None
        self.sql_port = None
        self.proc = None
        self.starts = 0
        self.log_paths = []
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # -- addresses -----------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    # -- lifecycle -----------------------------------------------------
    def args(self):
        # A broker started with --listeners names its PLAINTEXT listener on kafka_port.
        kafka = [] if "--listeners" in self.extra_args else ["--kafka-addr", self.bootstrap]
        return [
            str(self.binary),
            "--data-dir", str(self.data_dir),
            *kafka,
            "--admin-addr", f"127.0.0.1:{self.admin_port}",
            "--sql-addr", f"127.0.0.1:{self.sql_port}",
            "--node-id", str(self.node_id),
            *self.extra_args,
        ]

    def start(self):
        # Picking a port by binding 0 and closing leaves a tiny race with other
        # processes; if the broker cannot bind, pick new ports and try again
        # (only on the first start: restarts must keep their ports).
        first = self.kafka_port is None
        attempts = 3 if first else 1
        last_err = None
        for _ in range(attempts):
            if first:
                self.pick_ports()
            try:
                self._spawn_and_wait()
                return self
            except BrokerStartError as e:
                last_err = e
                if "in use" not in e.log.lower():
                    break
        raise AssertionError(str(last_err))

    def _spawn_and_wait(self):
        self.spawn()
        self.wait_ready()

    def pick_ports(self):
        self.kafka_port, self.admin_port = free_port(), free_port()
        while self.admin_port == self.kafka_port:
            self.admin_port = free_port()
        self.sql_port = free_port()
        while self.sql_port in (self.kafka_port, self.admin_port):
            self.sql_port = free_port()

    def spawn(self):
        """Starts the process without waiting (cluster nodes wait for each other)."""
        if self.kafka_port is None:
            self.pick_ports()
        self.starts += 1
        log_path = self.log_dir / f"karnak-{self.kafka_port}-start{self.starts}.stderr.log"
        self.log_paths.append(log_path)
        self._log_file = open(log_path, "wb")
        env = dict(os.environ)
        env.setdefault("NO_COLOR", "1")  # plain logs in failure reports
        env.update(self.env)
        as_user = {}
        if self.uid is not None:
            for d, _, files in os.walk(self.data_dir):
                for p in [d, *(os.path.join(d, f) for f in files)]:
                    os.chown(p, self.uid, self.uid)
            as_user = {"user": self.uid, "group": self.uid, "extra_groups": []}
        self.proc = subprocess.Popen(
            self.args(), stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, **as_user,
        )

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._log_file.close()
                raise BrokerStartError(
                    f"karnak exited with code {rc} before accepting connections; "
                    f"args={self.args()}\n--- log ---\n{self.log_tail()}",
                    self.log_tail(),
                )
            # Ready when the broker itself says it serves on our ports (SQL
            # binds last): a port free_port() found may have been bound by
            # another test's broker since, and a bare connect would reach it.
            log = self.log_path_text()
            if all(line in log for line in self.ready_lines()):
                return
            time.sleep(0.05)
        self.kill9()
        raise BrokerStartError(
            f"karnak did not accept connections on {self.bootstrap} within {START_TIMEOUT}s"
            f"\n--- log ---\n{self.log_tail()}",
            self.log_tail(),
        )

    def ready_lines(self):
        lines = [f"serving Kafka on 127.0.0.1:{self.kafka_port} "]
        if self.sql_port in self.listener_ports():
            lines.append(f"(Postgres wire) on 127.0.0.1:{self.sql_port}:")
        return lines

    def log_path_text(self) -> str:
        try:
            return self.log_paths[-1].read_text(errors="replace")
        except OSError:
            return ""

    def listener_ports(self):
        args = self.extra_args
        sql_off = any(a == "--sql-enabled" and args[i + 1:i + 2] == ["false"]
                      for i, a in enumerate(args))
        return [self.kafka_port] if sql_off else [self.kafka_port, self.sql_port]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT) -> int:
        """Signal the broker and wait for it to exit; returns its exit code
        (negative = killed by that signal, as in subprocess)."""
        if self.proc is None:
            raise AssertionError("broker not started")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self._log_file.close()
                raise AssertionError(
                    f"karnak did not exit within {timeout}s of signal {sig!r}; killed\n"
                    f"--- log ---\n{self.log_tail()}"
                )
        self._log_file.close()
        return self.proc.returncode

    def kill9(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc is not None:
            self._log_file.close()
            return self.proc.returncode
        return 0

    def restart(self):
        if self.alive():
            rc = self.stop()
            assert rc == 0, f"karnak exited with {rc} on SIGTERM\n{self.log_tail()}"
        self._spawn_and_wait()
        return self

    # -- observation ---------------------------------------------------
    def log_text(self) -> str:
        parts = []
        for p in self.log_paths:
            try:
                parts.append(f"===== {p.name} =====\n" + p.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def log_tail(self, n=200) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_report(self, n=200) -> str:
        """A failed test's view of the log: the lines that usually explain a
        failure (warnings, errors, panics, each log file's last line) first,
        then the tail. CI shows a failure's output cut in the middle, and a
        start logs a line per coordinator partition."""
        notable = []
        for p in self.log_paths:
            try:
                lines = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            picked = [ln for ln in lines if _NOTABLE.search(ln)]
            notable.append(f"--- {p.name}: {len(lines)} lines, {len(picked)} notable ---")
            notable.extend(picked[-40:])
            if lines:
                notable.append(f"(last) {lines[-1]}")
        return "\n".join(notable) + "\n===== tail =====\n" + self.log_tail(n)

    def metrics_text(self, timeout=10.0) -> str:
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=timeout) as r:
            assert r.status == 200, r.status
            return r.read().decode()

    def metrics(self) -> Metrics:
        return Metrics(parse_prometheus(self.metrics_text()))

    def __repr__(self):
        return f"<Broker {self.bootstrap} data={self.data_dir}>"


# Lines worth showing first when a test fails.
_NOTABLE = re.compile(r" (WARN|ERROR) |panicked|^Error:|RUST_BACKTRACE|Caused by|exit")


class BrokerStartError(Exception):
    def __init__(self, msg, log):
        super().__init__(msg)
        self.log = log


# -- report hook: show every broker log of a failed test -------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    # A test that cannot run must fail, not skip: CI would otherwise go green
    # on a suite that never exercised the broker.
    if rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skip is a failure in this suite: {rep.longrepr}"
    if rep.failed:
        for b in getattr(item, "_karnak_brokers", []):
            rep.sections.append((f"karnak log {b.bootstrap}", b.log_report(300)))
        for b in getattr(item.module, "_karnak_module_brokers", []) if item.module else []:
            rep.sections.append((f"karnak (module) log {b.bootstrap}", b.log_report(300)))


@pytest.fixture
def broker_factory(karnak_bin, tmp_path, request):
    """broker_factory(*extra_args, node_id=0) -> started Broker."""
    brokers = []
    request.node._karnak_brokers = brokers

    def make(*extra_args, node_id=0, env=None):
        n = len(brokers)
        b = Broker(karnak_bin, tmp_path / f"data{n}", tmp_path / "logs", extra_args,
                   node_id=node_id, env=env)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        b.kill9()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


@pytest.fixture(scope="module")
def shared_broker(karnak_bin, tmp_path_factory, request):
    """One broker per module, for cheap tests that use their own topics."""
    d = tmp_path_factory.mktemp("shared")
    b = Broker(karnak_bin, d / "data", d / "logs")
    request.module._karnak_module_brokers = [b]
    b.start()
    yield b
    b.kill9()


# -- small helpers shared by test modules ----------------------------------


def wait_until(pred, timeout, interval=0.05, msg="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {msg} (last={last!r})")


# -- TLS certificates ------------------------------------------------------
def openssl(cwd: Path, *args: str):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {args}: {r.stderr}"


def leaf(d: Path, name: str, cn: str, client: bool) -> tuple[Path, Path]:
    ext = ("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n" if client else
           "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
           "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / f"{name}.ext").write_text(ext)
    openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A CA (ca.pem), a server certificate for 127.0.0.1 and localhost, and a
    client certificate for CN=alice, made with the openssl command."""
    d = tmp_path_factory.mktemp("certs")
    openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=karnak-test-ca")
    server = leaf(d, "server", "karnak-test", client=False)
    client = leaf(d, "client", "alice", client=True)
    return {"ca": d / "ca.pem", "server": server, "client": client}
