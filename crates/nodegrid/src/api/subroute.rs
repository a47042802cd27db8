//! [`Subroute`]: a view of a [`Connection`] whose calls carry a subroute (PROTOCOL.md §3.6a).

use crate::api::call::{CallOptions, StreamCall, StreamOptions};
use crate::api::connection::Connection;
use crate::error::Error;
use crate::wire::HandlerId;
use bytes::Bytes;

impl Connection {
    /// A view of this connection that tags calls with a subroute (§3.6a).
    pub fn subroute(&self, name: impl Into<String>) -> Subroute {
        Subroute {
            conn: self.clone(),
            name: name.into(),
        }
    }
}

/// A view of a [`Connection`] whose calls carry a subroute (§3.6a).
#[derive(Debug, Clone)]
pub struct Subroute {
    conn: Connection,
    name: String,
}

impl Subroute {
    /// The subroute string.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A nested subroute (`parent/child`).
    pub fn subroute(&self, child: &str) -> Subroute {
        Subroute {
            conn: self.conn.clone(),
            name: format!("{}/{}", self.name, child),
        }
    }

    /// Sends a single request through this subroute.
    pub async fn request(
        &self,
        handler: HandlerId,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, Error> {
        self.conn
            .call_inner(
                handler,
                Some(&self.name),
                Some(payload.into()),
                CallOptions::default(),
                None,
            )
            .await
            .map(Option::unwrap_or_default)
    }

    /// Sends a single request with options.
    pub async fn call(
        &self,
        handler: HandlerId,
        payload: Option<Bytes>,
        opts: CallOptions,
    ) -> Result<Option<Bytes>, Error> {
        self.conn
            .call_inner(handler, Some(&self.name), payload, opts, None)
            .await
    }

    /// Opens a stream through this subroute.
    pub async fn open_stream(
        &self,
        handler: HandlerId,
        payload: Option<Bytes>,
        opts: StreamOptions,
    ) -> Result<StreamCall, Error> {
        self.conn
            .open_stream_inner(handler, Some(&self.name), payload, opts, None)
            .await
    }
}
