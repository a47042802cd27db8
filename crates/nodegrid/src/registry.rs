//! The handler registry: which code runs for an incoming call, looked up by handler ID or by
//! 32-byte subroute ID (PROTOCOL.md §7). Readers take a lock-free snapshot; registration
//! (rare) copies the table. The session finds handlers through the registry's implementation
//! of its `Handlers` trait.
//!
//! Single and streaming handlers live in separate tables, since the op code already says which
//! kind a call is: one ID may have one single handler and one streaming handler (the
//! reference allows one handler per ID across kinds; a second registration of the same kind
//! fails with `mux handler already exists`).

use crate::error::ConfigError;
use crate::session::handlers::{Handlers, SingleEntry, SingleHandler, StreamEntry};
use crate::wire::{handler_name, HandlerId, SubrouteId};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Default)]
struct Tables {
    single: HashMap<HandlerId, SingleEntry>,
    single_sub: HashMap<SubrouteId, SingleEntry>,
    stream: HashMap<HandlerId, StreamEntry>,
    stream_sub: HashMap<SubrouteId, StreamEntry>,
    /// Capacities of any subrouted registration of a stream handler ID, for callers (§6.1).
    stream_any_sub: HashMap<HandlerId, StreamEntry>,
}

/// The handler registry of a manager.
#[derive(Default)]
pub(crate) struct Registry {
    tables: ArcSwap<Tables>,
    write: parking_lot::Mutex<()>,
}

fn check_id(id: HandlerId) -> Result<(), ConfigError> {
    if id == 0 {
        return Err(ConfigError::Handler {
            handler: id,
            reason: "unknown mux handler (handler ID 0 is reserved)".into(),
        });
    }
    Ok(())
}

fn exists(id: HandlerId, sub: Option<&str>) -> ConfigError {
    ConfigError::Handler {
        handler: id,
        reason: match sub {
            Some(s) => format!(
                "handler {}, subroute:{s}: mux handler already exists",
                handler_name(id)
            ),
            None => format!("handler {}: mux handler already exists", handler_name(id)),
        },
    }
}

impl Registry {
    fn update(
        &self,
        f: impl FnOnce(&mut Tables) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let _g = self.write.lock();
        let mut t = Tables::clone(&self.tables.load());
        f(&mut t)?;
        self.tables.store(Arc::new(t));
        Ok(())
    }

    pub(crate) fn add_single(
        &self,
        id: HandlerId,
        subroute: Option<&str>,
        handler: Arc<dyn SingleHandler>,
    ) -> Result<(), ConfigError> {
        check_id(id)?;
        self.update(|t| {
            let entry = SingleEntry {
                handler,
                subroute: subroute.map(Arc::from),
            };
            match subroute {
                None => {
                    if t.single.contains_key(&id) {
                        return Err(exists(id, None));
                    }
                    t.single.insert(id, entry);
                }
                Some(s) => {
                    let key = SubrouteId::new(id, s);
                    if t.single_sub.contains_key(&key) {
                        return Err(exists(id, Some(s)));
                    }
                    t.single_sub.insert(key, entry);
                }
            }
            Ok(())
        })
    }

    pub(crate) fn add_stream(
        &self,
        id: HandlerId,
        subroute: Option<&str>,
        entry: StreamEntry,
    ) -> Result<(), ConfigError> {
        check_id(id)?;
        self.update(|t| {
            match subroute {
                None => {
                    if t.stream.contains_key(&id) {
                        return Err(exists(id, None));
                    }
                    t.stream.insert(id, entry);
                }
                Some(s) => {
                    let key = SubrouteId::new(id, s);
                    if t.stream_sub.contains_key(&key) {
                        return Err(exists(id, Some(s)));
                    }
                    t.stream_any_sub.insert(id, entry.clone());
                    t.stream_sub.insert(key, entry);
                }
            }
            Ok(())
        })
    }

    /// The local registration a caller uses to size a stream (§6.1): the plain one, or any
    /// subrouted one of the same ID.
    pub(crate) fn stream_for_caller(&self, id: HandlerId, subrouted: bool) -> Option<StreamEntry> {
        let t = self.tables.load();
        if subrouted {
            t.stream_any_sub
                .get(&id)
                .or_else(|| t.stream.get(&id))
                .cloned()
        } else {
            t.stream
                .get(&id)
                .or_else(|| t.stream_any_sub.get(&id))
                .cloned()
        }
    }
}

impl Handlers for Registry {
    fn single(&self, id: HandlerId, sub: Option<&SubrouteId>) -> Option<SingleEntry> {
        let t = self.tables.load();
        match sub {
            None => t.single.get(&id).cloned(),
            Some(s) => t.single_sub.get(s).cloned(),
        }
    }

    fn stream(&self, id: HandlerId, sub: Option<&SubrouteId>) -> Option<StreamEntry> {
        let t = self.tables.load();
        match sub {
            None => t.stream.get(&id).cloned(),
            Some(s) => t.stream_sub.get(s).cloned(),
        }
    }
}
