#!/usr/bin/env python3
"""Capture Kafka request frames of the legacy (pre-KIP-896) versions.

Stdlib only. Three ways to run it:

  capture_proxy.py proxy --upstream 127.0.0.1:9092 --client NAME --out DIR [--listen 127.0.0.1:0]
      A TCP proxy between a client and karnak. The client->broker stream is
      split into Kafka frames; each frame whose (api_key, api_version) is one
      of CAPTURED is written, whole (4-byte size prefix included), to
      DIR/<ApiName>_v<version>_<NAME>.bin, first occurrence only. Run karnak
      with `--advertised-kafka-addr <the proxy's address>` so that the client
      reaches every broker connection through the proxy.

  capture_proxy.py fake --client NAME --out DIR [--listen 127.0.0.1:0]
      No upstream: a tiny fake broker (node 0 = itself; every topic has one
      partition) answers what old clients send with minimal valid responses:
      Metadata v0-1, Produce v0-2, Fetch v0-3 (empty message sets), ListOffsets
      v0-1, FindCoordinator v0, OffsetCommit v0-2, OffsetFetch v0-1 (returns what
      was committed), CreateTopics v0-1, DeleteTopics v0; ApiVersions v0 with
      the list a Kafka 0.10.0 broker gives (a newer ApiVersions gets
      UNSUPPORTED_VERSION, KIP-511). Anything else closes the
      connection, as a broker does with a request it cannot parse. Frames are
      captured as in proxy mode. Used because today's karnak closes the
      connection on these versions, so a client stops before its later requests.

  capture_proxy.py describe FILE...
      Decodes captured frames (header, topics, partitions; Produce message sets
      with their magic, codec, offsets, timestamps, keys and values; gzip always,
      snappy and lz4 when python-snappy / python-lz4 are importable).

Both server modes print `listening on HOST:PORT` (stdout, flushed) once bound,
and `captured <file>` for each file written; they run until SIGTERM/SIGINT.
`--apis Produce,Fetch` narrows the capture to those API names.
"""

from __future__ import annotations

import argparse
import gzip
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib

API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
    9: "OffsetFetch", 10: "FindCoordinator", 18: "ApiVersions", 19: "CreateTopics",
    20: "DeleteTopics", 23: "OffsetForLeaderEpoch", 29: "DescribeAcls", 30: "CreateAcls",
    31: "DeleteAcls", 32: "DescribeConfigs", 35: "DescribeLogDirs",
}

# The request versions Kafka 4.0 removed (KIP-896) that karnak is to serve,
# plus a few neighbours the lead's tests want as references (Metadata v0,
# OffsetCommit v2, OffsetFetch v1).
LEGACY = {
    0: {0, 1, 2},           # Produce
    1: {0, 1, 2, 3},        # Fetch
    2: {0},                 # ListOffsets
    8: {0, 1},              # OffsetCommit
    9: {0},                 # OffsetFetch
    19: {0, 1},             # CreateTopics
    20: {0},                # DeleteTopics
    23: {0, 1},             # OffsetForLeaderEpoch
    29: {0}, 30: {0}, 31: {0},  # Describe/Create/DeleteAcls
    32: {0},                # DescribeConfigs
    35: {0},                # DescribeLogDirs
}
EXTRA = {3: {0}, 8: {2}, 9: {1}}
CAPTURED = {k: set(v) | EXTRA.get(k, set()) for k, v in LEGACY.items()}
for _k, _v in EXTRA.items():
    CAPTURED.setdefault(_k, set()).update(_v)

NAME_TO_KEY = {v: k for k, v in API_NAMES.items()}

# What a Kafka 0.10.0 broker lists in ApiVersions v0 (the fake's answer): clients
# that ask (librdkafka does when broker.version.fallback >= 0.10, even with
# api.version.request=false) then pick Produce v2 / Fetch v2 / message format v1.
KAFKA_0_10_0_APIS = [
    (0, 0, 2), (1, 0, 2), (2, 0, 0), (3, 0, 1), (4, 0, 0), (5, 0, 0), (6, 0, 2), (7, 1, 1),
    (8, 0, 2), (9, 0, 1), (10, 0, 0), (11, 0, 0), (12, 0, 0), (13, 0, 0), (14, 0, 0),
    (15, 0, 0), (16, 0, 0), (17, 0, 0), (18, 0, 0),
]


# ---------------------------------------------------------------- encoding
# The primitives are kafka_wire's (compat-tests/kafka_wire.py, stdlib only).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kafka_wire import i8, i16, i32, i64, nbytes, string  # noqa: E402


def boolean(v): return b"\x01" if v else b"\x00"


def array(items):
    items = list(items)
    return i32(len(items)) + b"".join(items)


class Reader:
    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"truncated: want {n} at {self.pos} of {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def nbytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)

    def array(self, item):
        n = self.i32()
        return None if n < 0 else [item() for _ in range(n)]

    def done(self):
        return self.pos == len(self.data)


def parse_header(payload: bytes):
    """-> (api_key, api_version, correlation_id, client_id, Reader at the body).
    Every legacy version uses request header v1 (no tagged fields)."""
    r = Reader(payload)
    key, ver, corr = r.i16(), r.i16(), r.i32()
    client = r.string()
    return key, ver, corr, client, r


# ---------------------------------------------------------------- capture
class Capturer:
    def __init__(self, out_dir, client, apis=None, verbose=False, quiet=False):
        self.out_dir = out_dir
        self.client = client
        self.apis = apis  # None = all of CAPTURED
        self.seen = set()
        self.requests = []  # (api_key, api_version) of every frame seen
        # Bumped by reset(): a connection opened before it (a previous test's client
        # still closing) is not counted in versions() afterwards.
        self.generation = 0
        self.lock = threading.Lock()
        self.verbose = verbose
        self.quiet = quiet
        os.makedirs(out_dir, exist_ok=True)

    def reset(self):
        """Forget what was seen (the .bin files stay); for a proxy reused across tests."""
        with self.lock:
            self.generation += 1
            self.seen.clear()
            self.requests.clear()

    def versions(self, api_name):
        """Versions of one API seen since the last reset (every frame, captured or not)."""
        key = NAME_TO_KEY[api_name]
        with self.lock:
            return {v for k, v in self.requests if k == key}

    def offer(self, frame: bytes, generation=None):
        """One request frame; generation = self.generation when its connection opened
        (None: always counted)."""
        if len(frame) < 12:
            return
        key, ver = struct.unpack(">hh", frame[4:8])
        with self.lock:
            if generation is not None and generation != self.generation:
                return
            self.requests.append((key, ver))
        if self.verbose:
            print(f"request {API_NAMES.get(key, key)} v{ver} ({len(frame)} bytes)", flush=True)
        if ver not in CAPTURED.get(key, ()):
            return
        name = API_NAMES[key]
        if self.apis is not None and name not in self.apis:
            return
        with self.lock:
            if (key, ver) in self.seen:
                return
            self.seen.add((key, ver))
        path = os.path.join(self.out_dir, f"{name}_v{ver}_{self.client}.bin")
        with open(path + ".tmp", "wb") as f:
            f.write(frame)
        os.replace(path + ".tmp", path)
        if not self.quiet:
            print(f"captured {path}", flush=True)


class FrameSplitter:
    """Feeds a byte stream, calls on_frame(frame) with each whole frame (size prefix included)."""

    def __init__(self, on_frame):
        self.buf = bytearray()
        self.on_frame = on_frame
        self.broken = False

    def feed(self, data: bytes):
        if self.broken:
            return
        self.buf += data
        while len(self.buf) >= 4:
            (size,) = struct.unpack(">i", self.buf[:4])
            if size < 0 or size > 200 * 1024 * 1024:
                self.broken = True  # not Kafka framing: stop parsing, keep forwarding
                return
            if len(self.buf) < 4 + size:
                return
            frame = bytes(self.buf[:4 + size])
            del self.buf[:4 + size]
            self.on_frame(frame)


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return bytes(out)


# ---------------------------------------------------------------- proxy mode
class ProxyHandler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        client = self.request
        if srv.upstream is None:
            return
        try:
            upstream = socket.create_connection(srv.upstream, timeout=10)
        except OSError as e:
            print(f"upstream {srv.upstream} unreachable: {e}", flush=True)
            return
        upstream.settimeout(None)
        generation = srv.capturer.generation
        splitter = FrameSplitter(lambda frame: srv.capturer.offer(frame, generation))

        def pump(src, dst, on_data=None):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if on_data:
                        on_data(data)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        t.start()
        pump(client, upstream, splitter.feed)
        t.join()
        upstream.close()


# ---------------------------------------------------------------- fake mode
class FakeState:
    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.lock = threading.Lock()
        self.topics = {}        # topic -> next offset of partition 0 (top-level messages counted)
        self.committed = {}     # (group, topic, partition) -> (offset, metadata)

    def topic(self, name):
        with self.lock:
            return self.topics.setdefault(name, 0)


def count_messages(message_set: bytes) -> int:
    """Top-level messages of a v0/v1 message set (a compressed wrapper counts as one)."""
    r = Reader(message_set)
    n = 0
    while len(message_set) - r.pos >= 12:
        r.i64()
        size = r.i32()
        if len(message_set) - r.pos < size:
            break
        r.take(size)
        n += 1
    return n


def fake_response(state: FakeState, key, ver, body: Reader) -> bytes | None:
    """The response body (after the correlation id) or None = close the connection."""
    host, port = state.host, state.port
    if key == 3 and ver in (0, 1):  # Metadata
        topics = body.array(body.string)
        if not topics:  # v0 [] or v1 null: all topics
            topics = sorted(set(state.topics) | {"legacy"})
        for t in topics:
            state.topic(t)
        broker = i32(0) + string(host) + i32(port) + (string(None) if ver >= 1 else b"")
        out = array([broker])
        if ver >= 1:
            out += i32(0)  # controller id
        parts = array([i16(0) + i32(0) + i32(0) + array([i32(0)]) + array([i32(0)])])
        out += array([i16(0) + string(t) + (boolean(False) if ver >= 1 else b"") + parts
                      for t in topics])
        return out
    if key == 0 and ver in (0, 1, 2):  # Produce
        acks = body.i16()
        body.i32()  # timeout
        resp_topics = []
        for _ in range(body.i32()):
            t = body.string()
            parts = []
            for _ in range(body.i32()):
                p = body.i32()
                ms = body.nbytes() or b""
                with state.lock:
                    base = state.topics.get(t, 0)
                    state.topics[t] = base + count_messages(ms)
                entry = i32(p) + i16(0) + i64(base)
                if ver >= 2:
                    entry += i64(-1)  # log_append_time: CreateTime topic
                parts.append(entry)
            resp_topics.append(string(t) + array(parts))
        if acks == 0:
            return b""  # no response
        return array(resp_topics) + (i32(0) if ver >= 1 else b"")
    if key == 1 and ver in (0, 1, 2, 3):  # Fetch: empty message sets
        body.i32()  # replica id
        max_wait = body.i32()
        body.i32()  # min bytes
        if ver >= 3:
            body.i32()  # max bytes
        resp_topics = []
        for _ in range(body.i32()):
            t = body.string()
            parts = []
            for _ in range(body.i32()):
                p = body.i32()
                body.i64()
                body.i32()
                hw = state.topics.get(t, 0)
                parts.append(i32(p) + i16(0) + i64(hw) + nbytes(b""))
            resp_topics.append(string(t) + array(parts))
        time.sleep(min(max(max_wait, 0), 500) / 1000.0)  # a long poll that finds nothing
        return (i32(0) if ver >= 1 else b"") + array(resp_topics)
    if key == 2 and ver in (0, 1):  # ListOffsets
        body.i32()  # replica id
        resp_topics = []
        for _ in range(body.i32()):
            t = body.string()
            parts = []
            for _ in range(body.i32()):
                p = body.i32()
                ts = body.i64()
                if ver == 0:
                    body.i32()  # max_num_offsets
                off = 0 if ts == -2 else state.topics.get(t, 0)
                if ver == 0:
                    parts.append(i32(p) + i16(0) + array([i64(off)]))
                else:
                    parts.append(i32(p) + i16(0) + i64(-1) + i64(off))
            resp_topics.append(string(t) + array(parts))
        return array(resp_topics)
    if key == 10 and ver == 0:  # FindCoordinator
        body.string()
        return i16(0) + i32(0) + string(host) + i32(port)
    if key == 8 and ver in (0, 1, 2):  # OffsetCommit
        group = body.string()
        if ver >= 1:
            body.i32()
            body.string()
        if ver >= 2:
            body.i64()
        resp_topics = []
        for _ in range(body.i32()):
            t = body.string()
            parts = []
            for _ in range(body.i32()):
                p = body.i32()
                off = body.i64()
                if ver == 1:
                    body.i64()  # commit timestamp
                md = body.string()
                with state.lock:
                    state.committed[(group, t, p)] = (off, md)
                parts.append(i32(p) + i16(0))
            resp_topics.append(string(t) + array(parts))
        return array(resp_topics)
    if key == 9 and ver in (0, 1):  # OffsetFetch
        group = body.string()
        resp_topics = []
        for _ in range(body.i32()):
            t = body.string()
            parts = []
            for _ in range(body.i32()):
                p = body.i32()
                off, md = state.committed.get((group, t, p), (-1, ""))
                parts.append(i32(p) + i64(off) + string(md) + i16(0))
            resp_topics.append(string(t) + array(parts))
        return array(resp_topics)
    if key == 19 and ver in (0, 1):  # CreateTopics
        topics = []
        for _ in range(body.i32()):
            t = body.string()
            body.i32()
            body.i16()
            body.array(lambda: (body.i32(), body.array(body.i32)))
            body.array(lambda: (body.string(), body.string()))
            topics.append(t)
            state.topic(t)
        return array([string(t) + i16(0) + (string(None) if ver >= 1 else b"") for t in topics])
    if key == 18:  # ApiVersions: answered as a Kafka 0.10.0 broker would (v0 only)
        if ver > 0:  # KIP-511: UNSUPPORTED_VERSION in the v0 format, naming the v0 we have
            return i16(35) + array([i16(18) + i16(0) + i16(0)])
        return i16(0) + array([i16(k) + i16(lo) + i16(hi) for k, lo, hi in KAFKA_0_10_0_APIS])
    if key == 20 and ver == 0:  # DeleteTopics
        topics = body.array(body.string)
        with state.lock:
            for t in topics:
                state.topics.pop(t, None)
        return array([string(t) + i16(0) for t in topics])
    return None


class FakeHandler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        sock = self.request
        while True:
            head = recv_exact(sock, 4)
            if head is None:
                return
            (size,) = struct.unpack(">i", head)
            if size < 0 or size > 200 * 1024 * 1024:
                return
            payload = recv_exact(sock, size)
            if payload is None:
                return
            srv.capturer.offer(head + payload)
            try:
                key, ver, corr, _client, body = parse_header(payload)
                resp = fake_response(srv.state, key, ver, body)
            except (ValueError, struct.error) as e:
                print(f"cannot parse request: {e}", flush=True)
                return
            if resp is None:
                print(f"fake broker: {API_NAMES.get(key, key)} v{ver} not served; closing",
                      flush=True)
                return
            if key == 0 and resp == b"":
                continue  # acks=0
            out = i32(corr) + resp
            try:
                sock.sendall(i32(len(out)) + out)
            except OSError:
                return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def start_in_thread(mode, out_dir, client, upstream=None, listen=("127.0.0.1", 0), apis=None):
    """Starts a proxy / fake broker in this process (a daemon thread); returns the
    server: .server_address, .capturer (versions(), reset()), .upstream (settable
    after start, so a broker can be told the proxy's address first), .shutdown()."""
    handler = ProxyHandler if mode == "proxy" else FakeHandler
    srv = Server(listen, handler)
    srv.capturer = Capturer(out_dir, client, apis, quiet=True)
    srv.upstream = upstream
    if mode == "fake":
        srv.state = FakeState(*srv.server_address[:2])
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    return srv


def serve(args):
    host, port = args.listen.rsplit(":", 1)
    handler = ProxyHandler if args.mode == "proxy" else FakeHandler
    srv = Server((host, int(port)), handler)
    bound_host, bound_port = srv.server_address[:2]
    apis = set(args.apis.split(",")) if args.apis else None
    if apis:
        unknown = apis - set(API_NAMES.values())
        if unknown:
            sys.exit(f"unknown API names: {sorted(unknown)}")
    srv.capturer = Capturer(args.out, args.client, apis, args.verbose)
    if args.mode == "proxy":
        uh, up = args.upstream.rsplit(":", 1)
        srv.upstream = (uh, int(up))
    else:
        srv.state = FakeState(bound_host, bound_port)

    def stop(_sig, _frm):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    srv.serve_forever(poll_interval=0.1)
    srv.server_close()


# ---------------------------------------------------------------- describe
def _decompress(codec, data, magic):
    if codec == 1:
        return gzip.decompress(data)
    if codec == 2:
        import snappy  # python-snappy
        if data.startswith(b"\x82SNAPPY\x00"):  # xerial framing (the Java client, kafka-python)
            r = Reader(data, 16)
            out = b""
            while not r.done():
                out += snappy.uncompress(r.nbytes())
            return out
        return snappy.uncompress(data)
    if codec == 3:
        import lz4.frame
        if magic == 0:
            # KAFKA-3160: magic-0 LZ4 frames carry a header checksum computed over the
            # magic bytes too; lz4.frame rejects it, so fix the HC byte before decoding.
            fixed = _fix_lz4_header_checksum(data)
            return lz4.frame.decompress(fixed)
        return lz4.frame.decompress(data)
    raise ValueError(f"codec {codec}")


def _fix_lz4_header_checksum(data: bytes) -> bytes:
    import xxhash
    flg = data[4]
    hdr_len = 2 + (8 if flg & 0x08 else 0)
    descriptor = data[4:4 + hdr_len]
    good = (xxhash.xxh32(descriptor).intdigest() >> 8) & 0xFF
    return data[:4 + hdr_len] + bytes([good]) + data[4 + hdr_len + 1:]


def lz4_header_checksum_kind(data: bytes) -> str:
    """'standard' if the frame's HC byte is xxh32(descriptor)>>8, 'kafka-3160' if it is
    computed over magic+descriptor (Kafka 0.8-0.9's broken framing), else 'unknown'."""
    try:
        import xxhash
    except ImportError:
        return "unchecked"
    flg = data[4]
    hdr_len = 2 + (8 if flg & 0x08 else 0)
    hc = data[4 + hdr_len]
    if (xxhash.xxh32(data[4:4 + hdr_len]).intdigest() >> 8) & 0xFF == hc:
        return "standard"
    if (xxhash.xxh32(data[0:4 + hdr_len]).intdigest() >> 8) & 0xFF == hc:
        return "kafka-3160"
    return "unknown"


CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4"}


def describe_message_set(ms: bytes, indent="      "):
    lines = []
    r = Reader(ms)
    while len(ms) - r.pos >= 12:
        offset = r.i64()
        size = r.i32()
        if len(ms) - r.pos < size:
            lines.append(f"{indent}(partial message: {len(ms) - r.pos} of {size} bytes)")
            break
        m = Reader(r.take(size))
        crc = m.i32() & 0xFFFFFFFF
        crc_ok = zlib.crc32(m.data[4:]) & 0xFFFFFFFF == crc
        magic = m.i8()
        attrs = m.i8()
        ts = m.i64() if magic >= 1 else None
        key = m.nbytes()
        value = m.nbytes()
        codec = attrs & 0x07
        desc = (f"{indent}offset={offset} magic={magic} codec={CODECS.get(codec, codec)} "
                f"crc={'ok' if crc_ok else 'BAD'}")
        if magic >= 1:
            desc += f" timestamp={ts} ts_type={'log_append' if attrs & 0x08 else 'create'}"
        if codec == 0:
            lines.append(desc + f" key={key!r} value={value!r}")
        else:
            extra = ""
            if codec == 3:
                extra = f" lz4_header_checksum={lz4_header_checksum_kind(value)}"
            lines.append(desc + f" key={key!r} wrapper of {len(value)} bytes{extra}:")
            try:
                inner = _decompress(codec, value, magic)
                lines.extend(describe_message_set(inner, indent + "  "))
            except Exception as e:  # noqa: BLE001 - describe what we can
                lines.append(f"{indent}  (cannot decompress: {type(e).__name__}: {e})")
    return lines


def describe(path):
    data = open(path, "rb").read()
    (size,) = struct.unpack(">i", data[:4])
    out = [f"{os.path.basename(path)}: {len(data)} bytes, size prefix {size}"
           f"{'' if size == len(data) - 4 else ' (MISMATCH)'}"]
    key, ver, corr, client, r = parse_header(data[4:])
    out.append(f"  {API_NAMES.get(key, key)} v{ver} correlation_id={corr} client_id={client!r}")
    try:
        if key == 0:
            acks, timeout = r.i16(), r.i32()
            out.append(f"  acks={acks} timeout_ms={timeout}")
            for _ in range(r.i32()):
                t = r.string()
                for _ in range(r.i32()):
                    p = r.i32()
                    ms = r.nbytes()
                    out.append(f"  topic={t!r} partition={p} message_set={len(ms)} bytes")
                    out.extend(describe_message_set(ms))
        elif key == 1:
            rep, wait, minb = r.i32(), r.i32(), r.i32()
            maxb = r.i32() if ver >= 3 else None
            out.append(f"  replica_id={rep} max_wait_ms={wait} min_bytes={minb}"
                       + (f" max_bytes={maxb}" if maxb is not None else ""))
            for _ in range(r.i32()):
                t = r.string()
                for _ in range(r.i32()):
                    out.append(f"  topic={t!r} partition={r.i32()} fetch_offset={r.i64()} "
                               f"partition_max_bytes={r.i32()}")
        elif key == 2:
            rep = r.i32()
            out.append(f"  replica_id={rep}")
            for _ in range(r.i32()):
                t = r.string()
                for _ in range(r.i32()):
                    p, ts = r.i32(), r.i64()
                    mx = r.i32() if ver == 0 else None
                    out.append(f"  topic={t!r} partition={p} timestamp={ts}"
                               + (f" max_num_offsets={mx}" if mx is not None else ""))
        elif key == 3:
            out.append(f"  topics={r.array(r.string)!r}")
        elif key == 8:
            g = r.string()
            gen = r.i32() if ver >= 1 else None
            mem = r.string() if ver >= 1 else None
            ret = r.i64() if ver >= 2 else None
            out.append(f"  group={g!r}" + (f" generation={gen} member={mem!r}" if ver >= 1 else "")
                       + (f" retention_ms={ret}" if ver >= 2 else ""))
            for _ in range(r.i32()):
                t = r.string()
                for _ in range(r.i32()):
                    p, off = r.i32(), r.i64()
                    ts = r.i64() if ver == 1 else None
                    md = r.string()
                    out.append(f"  topic={t!r} partition={p} offset={off}"
                               + (f" timestamp={ts}" if ver == 1 else "") + f" metadata={md!r}")
        elif key == 9:
            g = r.string()
            out.append(f"  group={g!r}")
            for _ in range(r.i32()):
                t = r.string()
                out.append(f"  topic={t!r} partitions={r.array(r.i32)}")
        else:
            out.append(f"  body: {r.data[r.pos:].hex()}")
            r.pos = len(r.data)
        if not r.done():
            out.append(f"  ({len(r.data) - r.pos} trailing bytes)")
    except (ValueError, struct.error) as e:
        out.append(f"  (cannot parse: {e})")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    for mode in ("proxy", "fake"):
        p = sub.add_parser(mode)
        p.add_argument("--listen", default="127.0.0.1:0")
        p.add_argument("--client", required=True, help="label in the capture file names")
        p.add_argument("--out", required=True, help="directory for the .bin files")
        p.add_argument("--apis", help="comma-separated API names to capture (default: all legacy)")
        p.add_argument("-v", "--verbose", action="store_true", help="print every request seen")
        if mode == "proxy":
            p.add_argument("--upstream", required=True, help="karnak's host:port")
    d = sub.add_parser("describe")
    d.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    if args.mode == "describe":
        for f in args.files:
            print(describe(f))
        return
    serve(args)


if __name__ == "__main__":
    main()
