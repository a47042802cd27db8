//! The handler registry: which code runs for an incoming call, looked up by handler ID or by
//! 32-byte subroute ID (PROTOCOL.md §7). Readers take a lock-free snapshot; registration
//! (rare) copies the table. The session finds handlers through the registry's implementation
//! of its `Handlers` trait.
//!
//! Single and streaming handlers live in separate tables, since the op code already says which
//! kind a call is: one ID may have one single handler and one streaming handler (the
//! reference allows one handler per ID across kinds; a second registration of the same kind
//! fails with `mux handler already exists`).
//!
//! A registration may carry a name (`SingleSpec::name`, `StreamSpec::name`, the typed
//! handles' `with_name`). The callee reports it to the call observer; a caller that meets an
//! unknown handler on a peer names it from its own registration of the same handler.

use crate::error::ConfigError;
use crate::session::handlers::{Handlers, SingleEntry, SingleHandler, StreamEntry};
use crate::wire::{handler_name, HandlerId, SubrouteId};
use arc_swap::ArcSwap;
use std::borrow::Cow;
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
            reason: "unknown mux handler (handler ID 0 is reserved; use 1 to 255)".into(),
        });
    }
    Ok(())
}

/// A name must be printable (it appears in errors, logs and audit records).
fn check_name(id: HandlerId, name: Option<&str>) -> Result<(), ConfigError> {
    match name {
        Some(n) if n.is_empty() || n.chars().any(char::is_control) => Err(ConfigError::Handler {
            handler: id,
            reason: format!(
                "handler name {n:?} is empty or has control characters: give a printable name, \
                 or none"
            ),
        }),
        _ => Ok(()),
    }
}

/// The reference's text for a second registration (PROTOCOL.md §7.2), with the handler's
/// own name if it has one, else the reference's name of the ID.
fn exists(id: HandlerId, sub: Option<&str>, name: Option<&str>) -> ConfigError {
    let name = name.map_or_else(|| handler_name(id), Cow::Borrowed);
    ConfigError::Handler {
        handler: id,
        reason: match sub {
            Some(s) => format!("handler {name}, subroute:{s}: mux handler already exists"),
            None => format!("handler {name}: mux handler already exists"),
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
        name: Option<&str>,
        handler: Arc<dyn SingleHandler>,
    ) -> Result<(), ConfigError> {
        check_id(id)?;
        check_name(id, name)?;
        self.update(|t| {
            let entry = SingleEntry {
                handler,
                subroute: subroute.map(Arc::from),
                name: name.map(Arc::from),
            };
            match subroute {
                None => {
                    if t.single.contains_key(&id) {
                        return Err(exists(id, None, name));
                    }
                    t.single.insert(id, entry);
                }
                Some(s) => {
                    let key = SubrouteId::new(id, s);
                    if t.single_sub.contains_key(&key) {
                        return Err(exists(id, Some(s), name));
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
        check_name(id, entry.name.as_deref())?;
        let name = entry.name.clone();
        self.update(|t| {
            match subroute {
                None => {
                    if t.stream.contains_key(&id) {
                        return Err(exists(id, None, name.as_deref()));
                    }
                    t.stream.insert(id, entry);
                }
                Some(s) => {
                    let key = SubrouteId::new(id, s);
                    if t.stream_sub.contains_key(&key) {
                        return Err(exists(id, Some(s), name.as_deref()));
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

impl Registry {
    /// The name of this node's single handler for a call to `id` through `subroute`, to name
    /// it in a caller's error: the registration of that subroute, else the plain one, else
    /// any subrouted one of the ID.
    pub(crate) fn single_name(&self, id: HandlerId, subroute: Option<&str>) -> Option<Arc<str>> {
        let t = self.tables.load();
        let exact = match subroute {
            Some(s) => t.single_sub.get(&SubrouteId::new(id, s)),
            None => t.single.get(&id),
        };
        exact
            .and_then(|e| e.name.clone())
            .or_else(|| t.single.get(&id).and_then(|e| e.name.clone()))
            .or_else(|| {
                // Deterministic when subroutes carry different names: the lowest key's.
                t.single_sub
                    .iter()
                    .filter(|(k, e)| k.handler() == id && e.name.is_some())
                    .min_by_key(|(k, _)| **k)
                    .and_then(|(_, e)| e.name.clone())
            })
    }

    /// The name of this node's stream handler for a call to `id` through `subroute` (the
    /// same order as [`Registry::single_name`]).
    pub(crate) fn stream_name(&self, id: HandlerId, subroute: Option<&str>) -> Option<Arc<str>> {
        let t = self.tables.load();
        let exact = match subroute {
            Some(s) => t.stream_sub.get(&SubrouteId::new(id, s)),
            None => t.stream.get(&id),
        };
        exact
            .and_then(|e| e.name.clone())
            .or_else(|| t.stream.get(&id).and_then(|e| e.name.clone()))
            .or_else(|| t.stream_any_sub.get(&id).and_then(|e| e.name.clone()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{StreamContext, StreamInput, StreamOutput};
    use bytes::Bytes;

    fn single() -> Arc<dyn SingleHandler> {
        Arc::new(|_r: crate::session::Request| async move {
            Ok::<_, crate::error::RemoteError>(Bytes::new())
        })
    }

    fn stream(name: Option<&str>, subroute: Option<&str>) -> StreamEntry {
        StreamEntry {
            handler: Arc::new(
                |_c: StreamContext, _i: StreamInput, _o: StreamOutput| async move { Ok(()) },
            ),
            subroute: subroute.map(Arc::from),
            name: name.map(Arc::from),
            in_capacity: 1,
            out_capacity: 1,
            with_payload: true,
            running: Arc::default(),
            max_running: usize::MAX,
        }
    }

    #[test]
    fn callers_find_names_by_subroute_then_id() {
        let r = Registry::default();
        r.add_single(5, Some("s/1"), Some("five.sub"), single())
            .unwrap();
        r.add_single(5, Some("s/0"), None, single()).unwrap();
        r.add_single(6, None, Some("six"), single()).unwrap();
        r.add_single(6, Some("s/1"), Some("six.sub"), single())
            .unwrap();
        r.add_single(7, None, None, single()).unwrap();
        let name = |id, sub| r.single_name(id, sub).map(|n| n.to_string());
        assert_eq!(name(5, Some("s/1")).as_deref(), Some("five.sub"));
        // Another subroute of 5, or none: any named subrouted registration of 5.
        assert_eq!(name(5, Some("s/9")).as_deref(), Some("five.sub"));
        assert_eq!(name(5, None).as_deref(), Some("five.sub"));
        assert_eq!(name(6, Some("s/1")).as_deref(), Some("six.sub"));
        assert_eq!(name(6, Some("s/9")).as_deref(), Some("six"));
        assert_eq!(name(7, None), None);
        assert_eq!(name(8, None), None);

        r.add_stream(5, None, stream(Some("five.stream"), None))
            .unwrap();
        r.add_stream(9, Some("d"), stream(Some("nine"), Some("d")))
            .unwrap();
        let name = |id, sub| r.stream_name(id, sub).map(|n| n.to_string());
        assert_eq!(name(5, None).as_deref(), Some("five.stream"));
        assert_eq!(name(5, Some("x")).as_deref(), Some("five.stream"));
        assert_eq!(name(9, None).as_deref(), Some("nine"));
        assert_eq!(name(6, None), None);
    }
}
