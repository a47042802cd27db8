//! A sharded table of live muxes keyed by mux ID.
//!
//! Callers insert and remove concurrently with the session's reader, so the table is split
//! into shards with one short-held lock each. A table can be *closed* (when its session ends):
//! inserts then fail, which closes the race between "check connected" and "register call"
//! (PROTOCOL.md §11 item 13) without a global lock.

use crate::stats::Padded;
use crate::wire::MuxId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SHARDS: usize = 16;

/// Multiplicative hash for mux IDs (sequential numbers need mixing for hashbrown's tag bits).
#[derive(Default)]
pub(crate) struct MuxHasher(u64);

impl Hasher for MuxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Map<V> = HashMap<MuxId, V, BuildHasherDefault<MuxHasher>>;

struct Shard<V> {
    map: Map<V>,
    closed: bool,
}

/// Why an insert failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertError {
    /// The table was closed (session ended).
    Closed,
    /// The ID is already in use.
    Duplicate,
}

/// Each shard is on cache lines of its own: callers on different threads lock neighbouring
/// shards at once, and sharing a line would make them contend anyway.
pub(crate) struct MuxTable<V> {
    shards: [Padded<Mutex<Shard<V>>>; SHARDS],
}

impl<V> Default for MuxTable<V> {
    fn default() -> Self {
        MuxTable {
            shards: std::array::from_fn(|_| {
                Padded(Mutex::new(Shard {
                    map: Map::default(),
                    closed: false,
                }))
            }),
        }
    }
}

impl<V> MuxTable<V> {
    fn shard(&self, id: MuxId) -> &Mutex<Shard<V>> {
        // Low bits of sequential IDs spread evenly over the shards.
        &self.shards[(id as usize) % SHARDS].0
    }

    pub(crate) fn insert(&self, id: MuxId, v: V) -> Result<(), InsertError> {
        let mut s = self.shard(id).lock();
        if s.closed {
            return Err(InsertError::Closed);
        }
        match s.map.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => Err(InsertError::Duplicate),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(v);
                Ok(())
            }
        }
    }

    pub(crate) fn remove(&self, id: MuxId) -> Option<V> {
        self.shard(id).lock().map.remove(&id)
    }

    pub(crate) fn contains(&self, id: MuxId) -> bool {
        self.shard(id).lock().map.contains_key(&id)
    }

    /// Runs `f` on the entry, if present, under the shard lock.
    pub(crate) fn with<R>(&self, id: MuxId, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.shard(id).lock().map.get_mut(&id).map(f)
    }

    /// Closes the table and returns every entry.
    pub(crate) fn close_and_drain(&self) -> Vec<V> {
        let mut out = Vec::new();
        for s in &self.shards {
            let mut s = s.0.lock();
            s.closed = true;
            out.extend(s.map.drain().map(|(_, v)| v));
        }
        out
    }

    /// Removes and returns every entry for which `pred` holds (one shard locked at a time).
    pub(crate) fn take_if(&self, mut pred: impl FnMut(&V) -> bool) -> Vec<(MuxId, V)> {
        let mut out = Vec::new();
        for s in &self.shards {
            let mut s = s.0.lock();
            if s.map.is_empty() {
                continue;
            }
            let ids: Vec<MuxId> = s
                .map
                .iter()
                .filter(|(_, v)| pred(v))
                .map(|(k, _)| *k)
                .collect();
            for id in ids {
                if let Some(v) = s.map.remove(&id) {
                    out.push((id, v));
                }
            }
        }
        out
    }

    /// Calls `f` on every entry (one shard locked at a time).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&V)) {
        for s in &self.shards {
            for v in s.0.lock().map.values() {
                f(v);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().map.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_close() {
        let t = MuxTable::default();
        t.insert(1, "a").unwrap();
        assert_eq!(t.insert(1, "b"), Err(InsertError::Duplicate));
        t.insert(17, "c").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.with(17, |v| *v), Some("c"));
        assert_eq!(t.remove(1), Some("a"));
        assert_eq!(t.remove(1), None);
        let mut drained = t.close_and_drain();
        drained.sort();
        assert_eq!(drained, vec!["c"]);
        assert_eq!(t.insert(2, "d"), Err(InsertError::Closed));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn take_if_removes_exactly_the_matching_entries() {
        let t = MuxTable::default();
        for id in 1..=40u64 {
            t.insert(id, id * 10).unwrap();
        }
        let mut taken = t.take_if(|v| v % 20 == 0);
        taken.sort();
        assert_eq!(taken, (1..=20).map(|i| (2 * i, 20 * i)).collect::<Vec<_>>());
        assert_eq!(t.len(), 20);
        assert!(!t.contains(2) && t.contains(1) && t.contains(39));
        assert!(t.take_if(|v| *v == 5).is_empty());
        let mut seen = Vec::new();
        t.for_each(|v| seen.push(*v));
        seen.sort();
        assert_eq!(seen, (0..20).map(|i| 20 * i + 10).collect::<Vec<_>>());
    }

    fn hash_u64(v: u64) -> u64 {
        let mut h = MuxHasher::default();
        h.write_u64(v);
        h.finish()
    }

    fn hash_bytes(b: &[u8]) -> u64 {
        let mut h = MuxHasher::default();
        h.write(b);
        h.finish()
    }

    #[test]
    fn mux_hasher_values_and_spread() {
        // Pinned values (computed independently): a changed mixing step is a deliberate act.
        assert_eq!(hash_u64(0), 0);
        assert_eq!(hash_u64(1), 0x9e37_79b9_7f4a_7c15);
        assert_eq!(hash_u64(2), 0x3c6e_f372_fe94_f82a);
        assert_eq!(hash_u64((1 << 40) + 7), 0x59ce_350c_ceea_0c93);
        assert_eq!(hash_u64(u64::MAX), 0x05ac_1f58_0000_0000);
        assert_eq!(hash_bytes(b""), 0);
        assert_eq!(hash_bytes(b"\x01"), 0x9e37_79b9_7f4a_7c15);
        assert_eq!(hash_bytes(b"\x01\x02"), 0xadfb_4fd7_d9bd_55cc);
        assert_eq!(hash_bytes(b"mux"), 0x311e_175c_ec14_5c53);
        assert_eq!(hash_bytes(&[0xff; 9]), 0x55c9_16dc_5b4a_bcd2);
        // Sequential IDs (what callers allocate) get distinct hashes whose top 7 bits (the
        // table's tag bits) take nearly every value.
        let ids = 1..=4096u64;
        let hashes: std::collections::HashSet<u64> = ids.clone().map(hash_u64).collect();
        assert_eq!(hashes.len(), 4096);
        let tags: std::collections::HashSet<u64> = ids.map(|v| hash_u64(v) >> 57).collect();
        assert!(tags.len() >= 120, "{} tag values", tags.len());
    }
}
