//! Request info carried with a request (LOGGING.md §1.6, §8.3).
//!
//! A [`ReqInfo`] is an `Arc` of immutable request fields plus one lock over the parts that
//! change while the request runs (tags, objects). Two carriers are supported:
//!
//! * a tokio task-local: the code that serves a request wraps its future in [`scope`];
//!   anything running inside it finds it with [`current`]. A spawned sub-task must be
//!   wrapped in [`scope`] again.
//! * span extensions: [`attach`] stores it in a `tracing` span (the request span); events
//!   inside that span, and sub-tasks `.instrument`ed with it, carry it. This needs a
//!   `tracing_subscriber::Registry`-based subscriber.
//!
//! The layer looks at the task-local first, then at the event's span scope.

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

/// The request info of the running task ([`scope`]), else of the current span ([`attach`]).
/// Do not call it from inside a `tracing` layer callback (nested dispatch sees no subscriber).
pub fn current() -> Option<Arc<ReqInfo>> {
    CURRENT
        .try_with(Arc::clone)
        .ok()
        .or_else(|| from_span(&tracing::Span::current()))
}

/// The task-local request info only.
pub(crate) fn task_current() -> Option<Arc<ReqInfo>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Extension type stored in a span.
#[derive(Clone)]
pub(crate) struct InSpan(pub(crate) Arc<ReqInfo>);

/// Stores `info` in `span`'s extensions. Returns false when the span is disabled or the
/// subscriber is not built on `tracing_subscriber::Registry`.
pub fn attach(span: &tracing::Span, info: Arc<ReqInfo>) -> bool {
    span.with_subscriber(|(id, dispatch)| {
        use tracing_subscriber::registry::LookupSpan;
        let Some(reg) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return false;
        };
        match reg.span(id) {
            Some(s) => {
                s.extensions_mut().replace(InSpan(info));
                true
            }
            None => false,
        }
    })
    .unwrap_or(false)
}

/// The request info attached to `span` or one of its parents.
pub fn from_span(span: &tracing::Span) -> Option<Arc<ReqInfo>> {
    span.with_subscriber(|(id, dispatch)| {
        use tracing_subscriber::registry::LookupSpan;
        let reg = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let s = reg.span(id)?;
        s.scope()
            .find_map(|s| s.extensions().get::<InSpan>().map(|i| i.0.clone()))
    })
    .flatten()
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
