//! Typed handlers (PROTOCOL.md §7.4): request, response and stream items as serde types
//! encoded with MessagePack. One object both registers the handler and calls it, so both ends
//! agree on the handler ID, the types and the capacities.
//!
//! ```no_run
//! # async fn f(mgr: nodegrid::Manager, conn: nodegrid::Connection) -> Result<(), Box<dyn std::error::Error>> {
//! use nodegrid::handler::typed::TypedHandler;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct DiskInfoReq { disk: String }
//! #[derive(Serialize, Deserialize)]
//! struct DiskInfo { free: u64 }
//!
//! const DISK_INFO: TypedHandler<DiskInfoReq, DiskInfo> =
//!     TypedHandler::new(9).with_name("disk.info");
//! DISK_INFO.register(&mgr, |req, _info| async move { Ok(DiskInfo { free: 42 }) })?;
//! let info = DISK_INFO.call(&conn, &DiskInfoReq { disk: "/d1".into() }).await?;
//! # Ok(()) }
//! ```
//!
//! The name (optional) appears in the caller's errors (`handler 9 "disk.info" is not
//! registered on http://…`, codec errors), in the callee's call observer
//! ([`crate::observe::CallRecord::name`]) and so in audit records. It never travels on the
//! wire.

use crate::api::call::{CallOptions, StreamCall, StreamOptions};
use crate::api::connection::Connection;
use crate::api::manager::{Manager, SingleSpec, StreamSpec};
use crate::error::{ConfigError, Error, HandlerLabel, RemoteError};
use crate::session::{Request, StreamContext, StreamInput, StreamOutput};
use crate::wire::HandlerId;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;

/// How a type is laid out in MessagePack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Structs as maps with field names as keys (msgp's default for Go structs).
    Map,
    /// Structs as arrays of fields (compact; field order matters).
    Tuple,
}

fn encode<T: Serialize>(enc: Encoding, v: &T) -> Result<Bytes, String> {
    match enc {
        Encoding::Map => rmp_serde::to_vec_named(v),
        Encoding::Tuple => rmp_serde::to_vec(v),
    }
    .map(Bytes::from)
    .map_err(|e| e.to_string())
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(b).map_err(|e| e.to_string())
}

fn codec_err(handler: HandlerId, name: Option<&str>, what: &str, e: String) -> Error {
    Error::Codec {
        handler,
        name: name.map(str::to_string),
        message: format!("{what}: {e}"),
    }
}

/// The callee's remote error for a payload that does not decode or encode:
/// `handler 9 "disk.info": decode request: <decoder's message>`.
fn codec_remote_err(handler: HandlerId, name: Option<&str>, what: &str, e: String) -> RemoteError {
    RemoteError(format!(
        "{}: {what}: {e}",
        HandlerLabel::new(handler, name, None)
    ))
}

/// A typed single-request handler.
pub struct TypedHandler<Req, Resp> {
    id: HandlerId,
    enc: Encoding,
    name: Option<&'static str>,
    _t: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Clone for TypedHandler<Req, Resp> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<Req, Resp> Copy for TypedHandler<Req, Resp> {}

impl<Req, Resp> std::fmt::Debug for TypedHandler<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TypedHandler({})",
            HandlerLabel::new(self.id, self.name, None)
        )
    }
}

impl<Req, Resp> TypedHandler<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    /// A handler at `id`, encoding structs as maps, without a name.
    pub const fn new(id: HandlerId) -> Self {
        TypedHandler {
            id,
            enc: Encoding::Map,
            name: None,
            _t: PhantomData,
        }
    }

    /// The same handler with another encoding.
    pub const fn with_encoding(self, enc: Encoding) -> Self {
        TypedHandler {
            id: self.id,
            enc,
            name: self.name,
            _t: PhantomData,
        }
    }

    /// The same handler with a name, used on both ends: in the caller's errors and in the
    /// callee's registration (call observer, audit). It never travels on the wire.
    ///
    /// ```
    /// use nodegrid::handler::typed::TypedHandler;
    /// const GET: TypedHandler<String, Vec<u8>> = TypedHandler::new(12).with_name("kv.get");
    /// assert_eq!(GET.name(), Some("kv.get"));
    /// ```
    pub const fn with_name(self, name: &'static str) -> Self {
        TypedHandler {
            id: self.id,
            enc: self.enc,
            name: Some(name),
            _t: PhantomData,
        }
    }

    /// The handler ID.
    pub fn id(&self) -> HandlerId {
        self.id
    }

    /// The handler's name, if it has one.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// Registers `f` on `mgr` (under the handler's name, if any). A request that does not
    /// decode is answered with a remote error naming the handler.
    pub fn register<F, Fut>(&self, mgr: &Manager, f: F) -> Result<(), ConfigError>
    where
        F: Fn(Req, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, RemoteError>> + Send + 'static,
    {
        let (id, enc, name) = (self.id, self.enc, self.name);
        let f = std::sync::Arc::new(f);
        let mut spec = SingleSpec::new();
        if let Some(n) = name {
            spec = spec.name(n);
        }
        mgr.register_single_with(id, spec, move |r: Request| {
            let f = f.clone();
            async move {
                let req: Req = decode(&r.bytes())
                    .map_err(|e| codec_remote_err(id, name, "decode request", e))?;
                let resp = f(req, r).await?;
                encode(enc, &resp).map_err(|e| codec_remote_err(id, name, "encode response", e))
            }
        })
    }

    /// Calls the handler on `conn`.
    pub async fn call(&self, conn: &Connection, req: &Req) -> Result<Resp, Error> {
        self.call_with(conn, req, CallOptions::default()).await
    }

    /// Calls the handler with options.
    pub async fn call_with(
        &self,
        conn: &Connection,
        req: &Req,
        opts: CallOptions,
    ) -> Result<Resp, Error> {
        let (id, name) = (self.id, self.name);
        let p = encode(self.enc, req).map_err(|e| codec_err(id, name, "encode request", e))?;
        let r = conn
            .call_inner(id, None, Some(p), opts, name)
            .await?
            .unwrap_or_default();
        decode(&r).map_err(|e| codec_err(id, name, "decode response", e))
    }
}

/// A typed streaming handler: an initial payload `P`, input items `In`, output items `Out`.
pub struct TypedStream<P, In, Out> {
    id: HandlerId,
    enc: Encoding,
    in_capacity: usize,
    out_capacity: usize,
    subroute: Option<&'static str>,
    name: Option<&'static str>,
    _t: PhantomData<fn(P, In) -> Out>,
}

impl<P, In, Out> Clone for TypedStream<P, In, Out> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P, In, Out> Copy for TypedStream<P, In, Out> {}

impl<P, In, Out> std::fmt::Debug for TypedStream<P, In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TypedStream({})",
            HandlerLabel::new(self.id, self.name, self.subroute)
        )
    }
}

/// Typed input of a stream handler.
pub struct TypedInput<In> {
    inner: StreamInput,
    id: HandlerId,
    name: Option<&'static str>,
    _t: PhantomData<fn() -> In>,
}

impl<In: DeserializeOwned> TypedInput<In> {
    /// The next input item; `None` at EOF. An item that does not decode is an error.
    pub async fn recv(&mut self) -> Option<Result<In, Error>> {
        let b = self.inner.recv().await?;
        Some(decode(&b).map_err(|e| codec_err(self.id, self.name, "decode input", e)))
    }
}

/// Typed output of a stream handler.
pub struct TypedOutput<Out> {
    inner: StreamOutput,
    id: HandlerId,
    name: Option<&'static str>,
    enc: Encoding,
    _t: PhantomData<fn(Out)>,
}

impl<Out: Serialize> TypedOutput<Out> {
    /// Sends one output item (waits for flow-control credit).
    pub async fn send(&self, v: &Out) -> Result<(), Error> {
        let b =
            encode(self.enc, v).map_err(|e| codec_err(self.id, self.name, "encode output", e))?;
        self.inner.send(b).await
    }
}

/// The caller's side of a typed stream.
pub struct TypedStreamCall<In, Out> {
    inner: StreamCall,
    id: HandlerId,
    name: Option<&'static str>,
    enc: Encoding,
    _t: PhantomData<fn(In) -> Out>,
}

impl<In: Serialize, Out: DeserializeOwned> TypedStreamCall<In, Out> {
    /// Sends one input item.
    pub async fn send(&self, v: &In) -> Result<(), Error> {
        let b =
            encode(self.enc, v).map_err(|e| codec_err(self.id, self.name, "encode input", e))?;
        self.inner.send(b).await
    }

    /// Ends the input.
    pub async fn close_send(&self) -> Result<(), Error> {
        self.inner.close_send().await
    }

    /// The next output item; `None` after a clean end.
    pub async fn recv(&mut self) -> Option<Result<Out, Error>> {
        let r = self.inner.recv().await?;
        Some(r.and_then(|b| {
            decode(&b).map_err(|e| codec_err(self.id, self.name, "decode output", e))
        }))
    }

    /// The untyped stream.
    pub fn into_inner(self) -> StreamCall {
        self.inner
    }
}

impl<P, In, Out> TypedStream<P, In, Out>
where
    P: Serialize + DeserializeOwned + Send + 'static,
    In: Serialize + DeserializeOwned + Send + 'static,
    Out: Serialize + DeserializeOwned + Send + 'static,
{
    /// A stream handler at `id` with capacities in 1 / out 1, map encoding, no subroute, no
    /// name.
    pub const fn new(id: HandlerId) -> Self {
        TypedStream {
            id,
            enc: Encoding::Map,
            in_capacity: 1,
            out_capacity: 1,
            subroute: None,
            name: None,
            _t: PhantomData,
        }
    }

    /// Names the handler, as [`TypedHandler::with_name`] does.
    ///
    /// ```
    /// use nodegrid::handler::typed::TypedStream;
    /// const WATCH: TypedStream<String, (), String> =
    ///     TypedStream::new(13).capacities(0, 16).with_name("kv.watch");
    /// assert_eq!(WATCH.name(), Some("kv.watch"));
    /// ```
    pub const fn with_name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// The handler ID.
    pub fn id(&self) -> HandlerId {
        self.id
    }

    /// The handler's name, if it has one.
    pub fn name(&self) -> Option<&'static str> {
        self.name
    }

    /// Sets the capacities (0 input = the handler takes no input).
    pub const fn capacities(mut self, in_capacity: usize, out_capacity: usize) -> Self {
        self.in_capacity = in_capacity;
        self.out_capacity = out_capacity;
        self
    }

    /// Registers and calls under a subroute.
    pub const fn subroute(mut self, s: &'static str) -> Self {
        self.subroute = Some(s);
        self
    }

    /// Sets the encoding.
    pub const fn with_encoding(mut self, enc: Encoding) -> Self {
        self.enc = enc;
        self
    }

    /// Registers `f` on `mgr`.
    pub fn register<F, Fut>(&self, mgr: &Manager, f: F) -> Result<(), ConfigError>
    where
        F: Fn(P, TypedInput<In>, TypedOutput<Out>, StreamContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), RemoteError>> + Send + 'static,
    {
        let (id, enc, name) = (self.id, self.enc, self.name);
        let f = std::sync::Arc::new(f);
        let mut spec = StreamSpec::new()
            .in_capacity(self.in_capacity)
            .out_capacity(self.out_capacity);
        if let Some(s) = self.subroute {
            spec = spec.subroute(s);
        }
        if let Some(n) = name {
            spec = spec.name(n);
        }
        mgr.register_stream(
            id,
            spec,
            move |ctx: StreamContext, input: StreamInput, output: StreamOutput| {
                let f = f.clone();
                async move {
                    let p: P = decode(&ctx.payload.clone().unwrap_or_default())
                        .map_err(|e| codec_remote_err(id, name, "decode payload", e))?;
                    let input = TypedInput {
                        inner: input,
                        id,
                        name,
                        _t: PhantomData,
                    };
                    let output = TypedOutput {
                        inner: output,
                        id,
                        name,
                        enc,
                        _t: PhantomData,
                    };
                    f(p, input, output, ctx).await
                }
            },
        )
    }

    /// Opens the stream on `conn` with the initial payload.
    pub async fn open(
        &self,
        conn: &Connection,
        payload: &P,
        opts: StreamOptions,
    ) -> Result<TypedStreamCall<In, Out>, Error> {
        let (id, name) = (self.id, self.name);
        let p = encode(self.enc, payload).map_err(|e| codec_err(id, name, "encode payload", e))?;
        let opts = opts.capacities(self.in_capacity as u32, self.out_capacity);
        let inner = conn
            .open_stream_inner(id, self.subroute, Some(p), opts, name)
            .await?;
        Ok(TypedStreamCall {
            inner,
            id,
            name,
            enc: self.enc,
            _t: PhantomData,
        })
    }
}
