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
}
