//! The cleaner's key → latest offset map over a log's dirty section, in a
//! fixed amount of memory (Kafka's `SkimpyOffsetMap`): keys are kept only
//! as 128-bit hashes, in an open-addressing table of 24-byte slots sized
//! from `log.cleaner.dedupe.buffer.size`.
//!
//! 128 bits because two keys that share a hash look like one key: the
//! older one's record would be cleaned away. At 2^-128 per pair that does
//! not happen; 64 bits would put it within reach of large logs.

use std::hash::{DefaultHasher, Hasher};

/// Bytes of one slot: a 128-bit hash and an i64 offset.
pub const SLOT_BYTES: usize = 24;
const EMPTY: i64 = -1;

#[derive(Clone, Copy)]
struct Slot {
    hash: (u64, u64),
    offset: i64,
}

pub struct OffsetMap {
    slots: Vec<Slot>,
    entries: usize,
    /// The last offset the map speaks for: records after it were not seen
    /// while building and must be kept.
    latest_offset: i64,
}

/// Two independent 64-bit SipHash values of `key` (fixed keys, so every
/// run agrees; the map lives only for one cleaning).
fn hash(key: &[u8]) -> (u64, u64) {
    let mut a = DefaultHasher::new();
    a.write(key);
    let mut b = DefaultHasher::new();
    b.write_u8(0x5a);
    b.write(key);
    (a.finish(), b.finish())
}

impl OffsetMap {
    /// A map of `slots` slots (at least 1).
    pub fn with_slots(slots: usize) -> Self {
        OffsetMap {
            slots: vec![
                Slot {
                    hash: (0, 0),
                    offset: EMPTY,
                };
                slots.max(1)
            ],
            entries: 0,
            latest_offset: -1,
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn latest_offset(&self) -> i64 {
        self.latest_offset
    }

    pub fn update_latest_offset(&mut self, offset: i64) {
        self.latest_offset = self.latest_offset.max(offset);
    }

    /// Fraction of slots in use.
    pub fn utilization(&self) -> f64 {
        self.entries as f64 / self.slots.len() as f64
    }

    fn find(&self, h: (u64, u64)) -> usize {
        let n = self.slots.len();
        let mut i = (h.0 % n as u64) as usize;
        // Bounded: the caller keeps the table below full, so an empty slot
        // or the key turns up within n probes.
        for _ in 0..n {
            let s = &self.slots[i];
            if s.offset == EMPTY || s.hash == h {
                return i;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        i
    }

    /// Records `offset` as the latest for `key` (offsets come in order, so
    /// the newer always wins). False when the table has no free slot.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = hash(key);
        let i = self.find(h);
        let n = self.slots.len();
        let s = &mut self.slots[i];
        if s.offset == EMPTY {
            if self.entries + 1 >= n {
                // Keep one slot empty so lookups of absent keys end.
                return false;
            }
            self.entries += 1;
            s.hash = h;
        } else if s.hash != h {
            return false;
        }
        s.offset = offset;
        self.latest_offset = self.latest_offset.max(offset);
        true
    }

    /// The latest offset recorded for `key`, or -1.
    pub fn get(&self, key: &[u8]) -> i64 {
        let h = hash(key);
        let s = &self.slots[self.find(h)];
        if s.offset != EMPTY && s.hash == h {
            s.offset
        } else {
            -1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_offset_wins_and_absent_keys_are_minus_one() {
        let mut m = OffsetMap::with_slots(1000);
        for i in 0..500i64 {
            assert!(m.put(format!("k{}", i % 100).as_bytes(), i));
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.get(b"k7"), 407);
        assert_eq!(m.get(b"absent"), -1);
        assert_eq!(m.latest_offset(), 499);
        m.update_latest_offset(600);
        assert_eq!(m.latest_offset(), 600);
    }

    #[test]
    fn a_full_table_refuses_new_keys_but_updates_old_ones() {
        let mut m = OffsetMap::with_slots(4);
        assert!(m.put(b"a", 1) && m.put(b"b", 2) && m.put(b"c", 3));
        assert!(!m.put(b"d", 4));
        assert!(m.put(b"a", 5));
        assert_eq!((m.get(b"a"), m.get(b"d")), (5, -1));
    }
}
