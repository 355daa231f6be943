"""Hand-rolled Kafka wire encoding for the raw-socket tests.

Only what the tests need: request headers v1/v2, ApiVersions v0/v3, Metadata,
Produce v3, Fetch v4, ListOffsets v1, and a v2 RecordBatch with CRC32C.
Nothing here depends on a Kafka client library, so a bug in a client cannot
hide a bug in the broker (and vice versa).
"""

from __future__ import annotations

import socket
import struct
import time

# --------------------------------------------------------------------------
# CRC32C (Castagnoli), table driven.
# --------------------------------------------------------------------------

_CRC32C_POLY = 0x82F63B78
_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _CRC32C_POLY if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value

# --------------------------------------------------------------------------
# Primitive encoders.
# --------------------------------------------------------------------------


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    if s is None:
        return i16(-1)
    b = s.encode() if isinstance(s, str) else s
    return i16(len(b)) + b


def nbytes(b):
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items):
    return i32(len(items)) + b"".join(items)


def uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(v):
    return uvarint((v << 1) ^ (v >> 63))  # zigzag


def compact_string(s):
    if s is None:
        return uvarint(0)
    b = s.encode() if isinstance(s, str) else s
    return uvarint(len(b) + 1) + b


EMPTY_TAGS = uvarint(0)

# --------------------------------------------------------------------------
# Request framing.
# --------------------------------------------------------------------------

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18


def header_v1(api_key, api_version, correlation_id, client_id="karnak-compat"):
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def header_v2(api_key, api_version, correlation_id, client_id="karnak-compat"):
    return header_v1(api_key, api_version, correlation_id, client_id) + EMPTY_TAGS


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


# --------------------------------------------------------------------------
# Response reader.
# --------------------------------------------------------------------------


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(
                f"response truncated: want {n} bytes at {self.pos}, have {len(self.data)}"
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self):
        shift = 0
        out = 0
        while True:
            b = self.take(1)[0]
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        return self.take(n).decode()

    def nbytes(self):
        n = self.i32()
        if n < 0:
            return None
        return self.take(n)

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())

    def remaining(self):
        return len(self.data) - self.pos


def connect(bootstrap: str, timeout=10.0) -> socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(sock, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)}/{n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock, timeout=15.0) -> bytes:
    deadline = time.monotonic() + timeout
    (size,) = struct.unpack(">i", recv_exact(sock, 4, deadline))
    assert 0 <= size < 1 << 30, f"bad response size {size}"
    return recv_exact(sock, size, deadline)


def roundtrip(bootstrap, payload: bytes, timeout=15.0) -> bytes:
    with connect(bootstrap) as s:
        s.sendall(frame(payload))
        return recv_frame(s, timeout)


def wait_closed(sock, timeout=10.0) -> bytes:
    """Read until the peer closes the connection; fail if it stays open past
    the deadline. Returns whatever bytes arrived before the close."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"broker kept the connection open for {timeout}s (received {len(got)} bytes)"
            )
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return bytes(got)
        except socket.timeout:
            continue
        if not chunk:
            return bytes(got)
        got += chunk


# --------------------------------------------------------------------------
# v2 RecordBatch.
# --------------------------------------------------------------------------


def encode_record(offset_delta, ts_delta, key, value, headers=()):
    body = bytearray()
    body += i8(0)  # attributes
    body += varint(ts_delta)
    body += varint(offset_delta)
    if key is None:
        body += varint(-1)
    else:
        body += varint(len(key)) + key
    if value is None:
        body += varint(-1)
    else:
        body += varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        hk = hk.encode() if isinstance(hk, str) else hk
        body += varint(len(hk)) + hk
        if hv is None:
            body += varint(-1)
        else:
            body += varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def record_batch(records, base_timestamp=None, base_offset=0, corrupt_crc=False,
                 count=None, last_offset_delta=None, magic=2, batch_length_delta=0,
                 raw_records=None):
    """records: list of (key, value) or (key, value, headers).
    The keyword overrides build inconsistent batches that still carry a
    valid CRC (count, last_offset_delta, magic, batch length, raw record bytes)."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    recs = b""
    for i, r in enumerate(records):
        key, value = r[0], r[1]
        headers = r[2] if len(r) > 2 else ()
        recs += encode_record(i, 0, key, value, headers)
    if raw_records is not None:
        recs = raw_records
    n = len(records)
    # everything after the crc field
    after_crc = (
        i16(0)  # attributes: no compression, CreateTime, not transactional
        + i32(n - 1 if last_offset_delta is None else last_offset_delta)
        + i64(base_timestamp)  # first timestamp
        + i64(base_timestamp)  # max timestamp
        + i64(-1)  # producer id
        + i16(-1)  # producer epoch
        + i32(-1)  # base sequence
        + i32(n if count is None else count)
        + recs
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    # batch length counts from partition leader epoch to the end
    batch_length = 4 + 1 + 4 + len(after_crc) + batch_length_delta
    return (
        i64(base_offset)
        + i32(batch_length)
        + i32(-1)  # partition leader epoch
        + i8(magic)
        + struct.pack(">I", crc)
        + after_crc
    )


def parse_record_batches(data: bytes):
    """Parse uncompressed v2 batches into [(offset, timestamp, key, value, headers)].
    Stops at a trailing partial batch (allowed by the protocol)."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, batch_len = struct.unpack(">qi", data[pos : pos + 12])
        end = pos + 12 + batch_len
        if end > len(data):
            break
        b = data[pos:end]
        magic = b[16]
        assert magic == 2, f"magic {magic}"
        (crc,) = struct.unpack(">I", b[17:21])
        assert crc32c(b[21:]) == crc, "fetched batch has a bad CRC"
        attributes, last_delta, first_ts, max_ts = struct.unpack(">hiqq", b[21:43])
        assert attributes & 0x7 == 0, "test only parses uncompressed batches"
        (count,) = struct.unpack(">i", b[57:61])
        r = _VarReader(b, 61)
        for _ in range(count):
            length = r.varint()
            start = r.pos
            r.pos += 1  # attributes
            ts_delta = r.varint()
            off_delta = r.varint()
            klen = r.varint()
            key = None if klen < 0 else r.take(klen)
            vlen = r.varint()
            value = None if vlen < 0 else r.take(vlen)
            headers = []
            for _ in range(r.varint()):
                hk = r.take(r.varint())
                hl = r.varint()
                headers.append((hk, None if hl < 0 else r.take(hl)))
            assert r.pos == start + length
            out.append((base_offset + off_delta, first_ts + ts_delta, key, value, headers))
        pos = end
    return out


class _VarReader:
    def __init__(self, data, pos):
        self.data = data
        self.pos = pos

    def take(self, n):
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(b)

    def varint(self):
        shift = 0
        out = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        return (out >> 1) ^ -(out & 1)


# --------------------------------------------------------------------------
# Requests and responses.
# --------------------------------------------------------------------------


def produce_v3(correlation_id, topic, partition, records_bytes, acks=-1, timeout_ms=10000):
    body = (
        string(None)  # transactional id
        + i16(acks)
        + i32(timeout_ms)
        + array([string(topic) + array([i32(partition) + nbytes(records_bytes)])])
    )
    return header_v1(API_PRODUCE, 3, correlation_id) + body


def parse_produce_v3(data: bytes):
    """-> (correlation_id, {(topic, partition): (error, base_offset, log_append_time)})"""
    r = Reader(data)
    cid = r.i32()
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            base = r.i64()
            lat = r.i64()
            out[(topic, p)] = (err, base, lat)
    r.i32()  # throttle
    return cid, out


def fetch_v4(correlation_id, topic, partition, offset, max_wait_ms=100, min_bytes=1,
             max_bytes=50 * 1024 * 1024, partition_max_bytes=10 * 1024 * 1024):
    body = (
        i32(-1)  # replica id
        + i32(max_wait_ms)
        + i32(min_bytes)
        + i32(max_bytes)
        + i8(0)  # read uncommitted
        + array([string(topic) + array([i32(partition) + i64(offset) + i32(partition_max_bytes)])])
    )
    return header_v1(API_FETCH, 4, correlation_id) + body


def parse_fetch_v4(data: bytes):
    """-> (correlation_id, {(topic, partition): (error, high_watermark, records_bytes)})"""
    r = Reader(data)
    cid = r.i32()
    r.i32()  # throttle
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            hw = r.i64()
            r.i64()  # last stable offset
            n_aborted = r.i32()
            for _ in range(max(n_aborted, 0)):
                r.i64()
                r.i64()
            records = r.nbytes()
            out[(topic, p)] = (err, hw, records)
    return cid, out


def list_offsets_v1(correlation_id, topic, partition, timestamp=-1):
    body = i32(-1) + array([string(topic) + array([i32(partition) + i64(timestamp)])])
    return header_v1(API_LIST_OFFSETS, 1, correlation_id) + body


def parse_list_offsets_v1(data: bytes):
    r = Reader(data)
    cid = r.i32()
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            ts = r.i64()
            off = r.i64()
            out[(topic, p)] = (err, ts, off)
    return cid, out


def api_versions_v0_request(correlation_id, version=0):
    return header_v1(API_API_VERSIONS, version, correlation_id)


def parse_api_versions_v0(data: bytes):
    """-> (correlation_id, error_code, {api_key: (min, max)})"""
    r = Reader(data)
    cid = r.i32()
    err = r.i16()
    apis = {}
    for _ in range(r.i32()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        apis[k] = (lo, hi)
    return cid, err, apis


def api_versions_v3_request(correlation_id, software="karnak-compat", version="1.0"):
    return (
        header_v2(API_API_VERSIONS, 3, correlation_id)
        + compact_string(software)
        + compact_string(version)
        + EMPTY_TAGS
    )


def parse_api_versions_v3(data: bytes):
    # ApiVersions responses always use response header v0 (no tagged fields).
    r = Reader(data)
    cid = r.i32()
    err = r.i16()
    n = r.uvarint() - 1
    apis = {}
    for _ in range(n):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        r.skip_tags()
        apis[k] = (lo, hi)
    throttle = r.i32()
    r.skip_tags()
    return cid, err, apis, throttle


def metadata_v1_request(correlation_id, topics=None, version=1):
    body = i32(-1) if topics is None else array([string(t) for t in topics])
    return header_v1(API_METADATA, version, correlation_id) + body


# Kafka error codes used by the tests.
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35
