//! Request info carried with a request (LOGGING.md §1.6, §8.3).
//!
//! A [`ReqInfo`] is an `Arc` of immutable request fields plus one lock over the parts that
//! change while the request runs (tags, objects). It travels in a tokio task-local: the code
//! that serves a request wraps its future in [`scope`], and anything running inside it (the
//! tracing layer included, since `on_event` runs on the emitting task) finds it with
//! [`current`]. A spawned sub-task must be wrapped in [`scope`] again.

use std::future::Future;
use std::sync::{Arc, RwLock};

use crate::entry::ObjectVersion;

tokio::task_local! {
    static CURRENT: Arc<ReqInfo>;
}

/// Runs `fut` with `info` as the current request info.
pub async fn scope<F: Future>(info: Arc<ReqInfo>, fut: F) -> F::Output {
    CURRENT.scope(info, fut).await
}

/// Runs `f` synchronously with `info` as the current request info.
pub fn sync_scope<R>(info: Arc<ReqInfo>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(info, f)
}

/// The request info of the running task, if it runs inside [`scope`].
pub fn current() -> Option<Arc<ReqInfo>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Immutable fields of a request plus its mutable tags and objects.
#[derive(Debug, Default)]
pub struct ReqInfo {
    /// Client source address.
    pub remote_host: String,
    /// This node's name (distributed) or the request's host.
    pub host: String,
    /// Client user agent.
    pub user_agent: String,
    /// Deployment id.
    pub deployment_id: String,
    /// Request id.
    pub request_id: String,
    /// API / handler name.
    pub api: String,
    /// Bucket.
    pub bucket: String,
    /// Object.
    pub object: String,
    /// Version id.
    pub version_id: String,
    /// Caller's access key (audit only, never in log entries).
    pub access_key: String,
    mutable: RwLock<Mutable>,
}

/// The mutable part, read by loggers under one read guard.
#[derive(Debug, Default, Clone)]
pub struct Mutable {
    /// Ordered key/value tags.
    pub tags: Vec<(String, String)>,
    /// Objects of a multi-object request.
    pub objects: Vec<ObjectVersion>,
}

impl ReqInfo {
    /// A request info with the given API name and all other fields empty.
    pub fn new(api: impl Into<String>) -> Self {
        ReqInfo {
            api: api.into(),
            ..Default::default()
        }
    }

    /// Appends a tag (duplicates allowed).
    pub fn append_tag(&self, key: impl Into<String>, value: impl Into<String>) {
        let mut m = self.mutable.write().unwrap_or_else(|p| p.into_inner());
        m.tags.push((key.into(), value.into()));
    }

    /// Sets a tag: replaces the value when the key exists, else appends (an upsert —
    /// LOGGING.md §1.6 deviation from the reference, whose "set" did nothing on an existing key).
    pub fn set_tag(&self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        let mut m = self.mutable.write().unwrap_or_else(|p| p.into_inner());
        match m.tags.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => m.tags.push((key, value)),
        }
    }

    /// Adds an object of a multi-object request.
    pub fn push_object(&self, object: ObjectVersion) {
        let mut m = self.mutable.write().unwrap_or_else(|p| p.into_inner());
        m.objects.push(object);
    }

    /// A consistent copy of the mutable part, taken under one read guard.
    pub fn snapshot(&self) -> Mutable {
        self.mutable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_tag_is_an_upsert() {
        let r = ReqInfo::new("x");
        r.set_tag("a", "1");
        r.append_tag("b", "2");
        r.set_tag("a", "3");
        let s = r.snapshot();
        assert_eq!(
            s.tags,
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
    }

    #[tokio::test]
    async fn current_is_visible_inside_scope_only() {
        assert!(current().is_none());
        let info = Arc::new(ReqInfo::new("PutObject"));
        let api = scope(info, async { current().map(|r| r.api.clone()) }).await;
        assert_eq!(api.as_deref(), Some("PutObject"));
        assert!(current().is_none());
    }
}
