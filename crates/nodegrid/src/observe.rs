//! A hook that sees every completed incoming call (single request or stream), for audit logs
//! and metrics. Installed with [`crate::ManagerBuilder::observe_calls`]; without one the hot
//! path pays a single branch.
//!
//! ```no_run
//! # fn f(b: nodegrid::ManagerBuilder) {
//! let b = b.observe_calls(|r| {
//!     let handler = r.name.map_or_else(|| r.handler.to_string(), str::to_string);
//!     println!("{handler} from {}: {:?} in {:?}", r.caller, r.outcome, r.duration);
//! });
//! # }
//! ```

use crate::wire::HandlerId;
use std::sync::Arc;
use std::time::Duration;

/// What kind of call completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A single request.
    Single,
    /// A stream.
    Stream,
}

/// How an incoming call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The handler succeeded.
    Ok,
    /// The handler (or the framework) answered with this remote error text.
    RemoteError(String),
    /// The caller cancelled, the deadline passed, or the connection dropped.
    Cancelled,
}

/// One completed incoming call.
#[derive(Debug, Clone)]
pub struct CallRecord<'a> {
    /// Single or stream.
    pub kind: CallKind,
    /// The handler ID.
    pub handler: HandlerId,
    /// The name the handler was registered with ([`crate::SingleSpec::name`],
    /// [`crate::StreamSpec::name`], the typed handles' `with_name`), if any.
    /// [`crate::handler::handler_name`] gives MinIO's name of a MinIO handler ID.
    pub name: Option<&'a str>,
    /// The subroute the handler is registered under, if any.
    pub subroute: Option<&'a str>,
    /// The caller's host string.
    pub caller: &'a str,
    /// Time from receipt to the first response byte (the whole call for single requests).
    pub time_to_first_byte: Duration,
    /// Time from receipt to completion.
    pub duration: Duration,
    /// Payload bytes received (request, or initial payload plus stream input).
    pub bytes_in: u64,
    /// Payload bytes sent (response, or stream output).
    pub bytes_out: u64,
    /// The result.
    pub outcome: CallOutcome,
}

/// The observer callback type.
pub(crate) type Observer = Arc<dyn Fn(&CallRecord<'_>) + Send + Sync>;
