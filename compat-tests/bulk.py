"""Record content and verification for the bulk (1M record) round trips."""

from __future__ import annotations

N_KEYS = 97
_PADS = [bytes((j * 7 + k) % 256 for k in range(89)) for j in range(251)]


def make_key(seq: int) -> bytes:
    return b"key-%03d" % (seq % N_KEYS)


def make_value(seq: int) -> bytes:
    # 100 bytes: 10-digit sequence number, '|', 89 bytes that depend on seq
    return b"%010d|" % seq + _PADS[seq % 251]


def seq_of(value: bytes) -> int:
    return int(value[:10])


class BulkVerifier:
    """Feed it every consumed record; check() asserts exactly-once, content,
    per-partition order and contiguous offsets."""

    def __init__(self, n: int, partitions: int):
        self.n = n
        self.partitions = partitions
        self.seen = bytearray(n)
        self.count = 0
        self.last_seq = [-1] * partitions
        self.next_offset = [None] * partitions
        self.key_partition = {}
        self.errors = []

    def add(self, partition, offset, key, value):
        self.count += 1
        err = self.errors
        if len(err) > 20:
            return
        try:
            seq = seq_of(value)
        except ValueError:
            err.append(f"p{partition}@{offset}: unparseable value {value[:20]!r}")
            return
        if not 0 <= seq < self.n:
            err.append(f"p{partition}@{offset}: seq {seq} out of range")
            return
        if self.seen[seq]:
            err.append(f"p{partition}@{offset}: duplicate seq {seq}")
        self.seen[seq] = 1
        if value != make_value(seq):
            err.append(f"p{partition}@{offset}: value mismatch for seq {seq}")
        if key != make_key(seq):
            err.append(f"p{partition}@{offset}: key {key!r} != {make_key(seq)!r}")
        kp = self.key_partition.setdefault(key, partition)
        if kp != partition:
            err.append(f"key {key!r} in partitions {kp} and {partition}")
        if seq <= self.last_seq[partition]:
            err.append(f"p{partition}@{offset}: order broken, seq {seq} after {self.last_seq[partition]}")
        self.last_seq[partition] = seq
        exp = self.next_offset[partition]
        if exp is None:
            if offset != 0:
                err.append(f"p{partition}: first offset {offset}, expected 0")
        elif offset != exp:
            err.append(f"p{partition}: offset {offset} after {exp - 1}")
        self.next_offset[partition] = offset + 1

    def check(self):
        assert not self.errors, "\n".join(self.errors[:20])
        missing = self.n - sum(self.seen)
        assert missing == 0, f"{missing} of {self.n} records missing (consumed {self.count})"
        assert self.count == self.n, f"consumed {self.count} records, produced {self.n}"
        used = [p for p in range(self.partitions) if self.next_offset[p]]
        assert len(used) == self.partitions, f"keys only reached partitions {used}"
