//! Handler names and unknown handlers (issue 15): the caller's typed error for a handler the
//! peer lacks (single requests and streams, with and without subroute, raw and typed), names in
//! errors and in the call observer's records, and the texts on the wire, which stay MinIO's.
//! Runs on the in-memory network.

mod common;

use bytes::Bytes;
use common::rawpeer::{dialing_host_for, RawPeer};
use common::wait_for;
use nodegrid::auth::Auth;
use nodegrid::handler::typed::{TypedHandler, TypedStream};
use nodegrid::handler::Request;
use nodegrid::observe::{CallKind, CallOutcome};
use nodegrid::transport::MemoryNetwork;
use nodegrid::wire::{GridTime, Message, MuxConnectErrorPayload, Op, SubrouteId};
use nodegrid::{
    Error, Manager, RemoteError, SingleSpec, StreamContext, StreamInput, StreamOptions,
    StreamOutput, StreamSpec, UnknownHandlerKind,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const A: &str = "http://a:9000";
const B: &str = "http://b:9000";

/// Registered on both nodes.
const KV_GET: TypedHandler<String, String> = TypedHandler::new(12).with_name("kv.get");
/// Registered nowhere.
const KV_PUT: TypedHandler<String, String> = TypedHandler::new(40).with_name("kv.put");
/// Registered nowhere.
const KV_TAIL: TypedStream<String, (), String> =
    TypedStream::new(15).capacities(0, 4).with_name("kv.tail");
/// Registered on both nodes, named, under a subroute.
const KV_SCAN: TypedStream<String, u32, String> = TypedStream::new(16)
    .capacities(2, 2)
    .subroute("kv/1")
    .with_name("kv.scan");
/// A typed handle whose response type does not match what handler 22 answers.
const BAD_REPLY: TypedHandler<String, u32> = TypedHandler::new(22).with_name("bad.reply");

/// What node B's call observer saw: kind, handler, name, subroute, outcome.
type Seen = Arc<Mutex<Vec<(CallKind, u8, Option<String>, Option<String>, CallOutcome)>>>;

struct Nodes {
    net: MemoryNetwork,
    a: Manager,
    b: Manager,
    fake: String,
    seen: Seen,
}

/// Handlers both nodes run.
fn common_handlers(m: &Manager) {
    KV_GET
        .register(
            m,
            |k: String, _r| async move { Ok(format!("value of {k}")) },
        )
        .unwrap();
    KV_SCAN
        .register(m, |prefix: String, mut input, output, _ctx| async move {
            while let Some(n) = input.recv().await {
                let n = n.map_err(|e| RemoteError::new(e.to_string()))?;
                output
                    .send(&format!("{prefix}{n}"))
                    .await
                    .map_err(|e| RemoteError::new(e.to_string()))?;
            }
            Ok(())
        })
        .unwrap();
    m.register_single(
        78,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    m.register_single_with(
        21,
        SingleSpec::new().name("disk.read").subroute("d1"),
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    // A MessagePack string, where BAD_REPLY expects a number.
    m.register_single(22, |_r: Request| async move {
        Ok::<_, RemoteError>(Bytes::from_static(b"\xa1x"))
    })
    .unwrap();
}

fn stream_stub() -> impl nodegrid::StreamHandler {
    |_ctx: StreamContext, _input: StreamInput, _output: StreamOutput| async move { Ok(()) }
}

/// Node A registers, besides the common handlers, handlers B does not have: a named single
/// under a subroute (20 "kv.del", subroute kv/1), a named stream (13 "kv.watch") and an
/// unnamed one (14).
async fn nodes() -> Nodes {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let fake = dialing_host_for(B, &[A.to_string()]);
    let hosts = vec![A.to_string(), B.to_string(), fake.clone()];
    let seen: Seen = Arc::default();
    let a = Manager::builder(A, hosts.clone())
        .auth(Auth::shared_token("names"))
        .dialer(net.dialer(A))
        .build()
        .unwrap();
    let s = seen.clone();
    let b = Manager::builder(B, hosts)
        .auth(Auth::shared_token("names"))
        .dialer(net.dialer(B))
        .observe_calls(move |r| {
            s.lock().unwrap().push((
                r.kind,
                r.handler,
                r.name.map(str::to_string),
                r.subroute.map(str::to_string),
                r.outcome.clone(),
            ))
        })
        .build()
        .unwrap();
    common_handlers(&a);
    common_handlers(&b);
    a.register_single_with(
        20,
        SingleSpec::new().name("kv.del").subroute("kv/1"),
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    a.register_stream(
        13,
        StreamSpec::new()
            .name("kv.watch")
            .in_capacity(1)
            .out_capacity(4),
        stream_stub(),
    )
    .unwrap();
    a.register_stream(14, StreamSpec::new().out_capacity(4), stream_stub())
        .unwrap();
    net.attach(&a);
    net.attach(&b);
    a.connection(B)
        .unwrap()
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    Nodes {
        net,
        a,
        b,
        fake,
        seen,
    }
}

fn not_on_b(handler: u8, name: Option<&str>, subroute: Option<&str>) -> Error {
    Error::UnknownHandler {
        handler,
        name: name.map(str::to_string),
        subroute: subroute.map(str::to_string),
        remote: B.to_string(),
        kind: UnknownHandlerKind::NotOnRemote,
    }
}

#[tokio::test]
async fn unknown_single_handlers_are_typed_and_named_from_the_local_registration() {
    let n = nodes().await;
    let conn = n.a.connection(B).unwrap();
    // Named by A's own registration of 20 (under another subroute).
    let e = conn.subroute("kv/nope").request(20, "k").await.unwrap_err();
    assert_eq!(e, not_on_b(20, Some("kv.del"), Some("kv/nope")));
    assert_eq!(
        e.to_string(),
        "handler 20 \"kv.del\" (subroute kv/nope) is not registered on http://b:9000: check the \
         handler ID and subroute, and that the node runs a version that registers it"
    );
    let e = conn.request(20, "k").await.unwrap_err();
    assert_eq!(e, not_on_b(20, Some("kv.del"), None));
    assert_eq!(
        e.to_string(),
        "handler 20 \"kv.del\" is not registered on http://b:9000: check the handler ID, and \
         that the node runs a version that registers it"
    );
    // Unnamed and unregistered here: the ID only, never MinIO's name of 12 ("ReadVersion").
    let e = conn.subroute("kv/nope").request(30, "k").await.unwrap_err();
    assert_eq!(e, not_on_b(30, None, Some("kv/nope")));
    assert_eq!(
        e.to_string(),
        "handler 30 (subroute kv/nope) is not registered on http://b:9000: check the handler ID \
         and subroute, and that the node runs a version that registers it"
    );
    // A typed handle names itself.
    let e = KV_PUT.call(&conn, &"k".to_string()).await.unwrap_err();
    assert_eq!(e, not_on_b(40, Some("kv.put"), None));
    assert_eq!(
        e.to_string(),
        "handler 40 \"kv.put\" is not registered on http://b:9000: check the handler ID, and \
         that the node runs a version that registers it"
    );
    // Counted as errors the remote side returned.
    assert_eq!(conn.stats().errors.remote, 4);
    assert_eq!(conn.stats().errors.other, 0);
    // The session is fine.
    assert_eq!(KV_GET.call(&conn, &"x".into()).await.unwrap(), "value of x");
    n.a.shutdown();
    n.b.shutdown();
}

#[tokio::test]
async fn unknown_stream_handlers_are_typed_with_and_without_subroute() {
    let n = nodes().await;
    let conn = n.a.connection(B).unwrap();
    // Named (StreamSpec::name), no subroute: the error arrives on the stream.
    let mut s = conn
        .open_stream(13, None, StreamOptions::new())
        .await
        .unwrap();
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(e, not_on_b(13, Some("kv.watch"), None));
    assert_eq!(
        e.to_string(),
        "handler 13 \"kv.watch\" is not registered on http://b:9000: check the handler ID, and \
         that the node runs a version that registers it"
    );
    assert!(s.recv().await.is_none());
    // The input half reports the same error.
    assert_eq!(
        s.send(Bytes::from_static(b"x")).await.unwrap_err(),
        not_on_b(13, Some("kv.watch"), None)
    );
    // Named, through a subroute, split into halves.
    let (tx, mut rx) = conn
        .subroute("kv/nope")
        .open_stream(13, None, StreamOptions::new())
        .await
        .unwrap()
        .split();
    let e = rx.recv().await.unwrap().unwrap_err();
    assert_eq!(e, not_on_b(13, Some("kv.watch"), Some("kv/nope")));
    assert_eq!(
        e.to_string(),
        "handler 13 \"kv.watch\" (subroute kv/nope) is not registered on http://b:9000: check \
         the handler ID and subroute, and that the node runs a version that registers it"
    );
    assert_eq!(
        tx.close_send().await.unwrap_err(),
        not_on_b(13, Some("kv.watch"), Some("kv/nope"))
    );
    // Unnamed, through a subroute.
    let mut s = conn
        .subroute("x/y")
        .open_stream(14, None, StreamOptions::new())
        .await
        .unwrap();
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(e, not_on_b(14, None, Some("x/y")));
    assert_eq!(
        e.to_string(),
        "handler 14 (subroute x/y) is not registered on http://b:9000: check the handler ID and \
         subroute, and that the node runs a version that registers it"
    );
    // A typed stream names itself.
    let mut s = KV_TAIL
        .open(&conn, &"k".to_string(), StreamOptions::new())
        .await
        .unwrap();
    assert_eq!(
        s.recv().await.unwrap().unwrap_err(),
        not_on_b(15, Some("kv.tail"), None)
    );
    // Refused locally: no registration here to size the stream, handler 0.
    let e = conn
        .subroute("kv/1")
        .open_stream(17, None, StreamOptions::new())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::UnknownHandler {
            handler: 17,
            name: None,
            subroute: Some("kv/1".into()),
            remote: B.into(),
            kind: UnknownHandlerKind::NoLocalStream,
        }
    );
    assert_eq!(
        e.to_string(),
        "handler 17 (subroute kv/1) has no stream registration on this node to size the stream \
         to http://b:9000 (capacities are not negotiated): register the stream handler on this \
         node too, or set StreamOptions::capacities"
    );
    let e = conn
        .open_stream(0, None, StreamOptions::new().capacities(1, 1))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "handler 0 is reserved and never registered (call to http://b:9000): use a handler ID \
         from 1 to 255"
    );
    assert!(e.is_unknown_handler());
    // Nothing left over on either side.
    wait_for("no muxes left", Duration::from_secs(10), || {
        conn.mux_counts() == nodegrid::MuxCounts::default()
            && n.b.connection(A).unwrap().mux_counts() == nodegrid::MuxCounts::default()
    })
    .await;
    n.a.shutdown();
    n.b.shutdown();
}

#[tokio::test]
async fn names_reach_the_call_observer_and_codec_errors() {
    let n = nodes().await;
    let conn = n.a.connection(B).unwrap();
    assert_eq!(KV_GET.call(&conn, &"x".into()).await.unwrap(), "value of x");
    assert_eq!(
        &conn.subroute("d1").request(21, "r").await.unwrap()[..],
        b"r"
    );
    assert_eq!(&conn.request(78, "e").await.unwrap()[..], b"e");
    let mut s = KV_SCAN
        .open(&conn, &"p".to_string(), StreamOptions::new())
        .await
        .unwrap();
    s.send(&7).await.unwrap();
    assert_eq!(s.recv().await.unwrap().unwrap(), "p7");
    s.close_send().await.unwrap();
    assert!(s.recv().await.is_none());
    // The callee's decode error names the handler.
    let e = conn.request(12, "not msgpack").await.unwrap_err();
    let text = e.remote_text().unwrap();
    assert!(
        text.starts_with("handler 12 \"kv.get\": decode request: "),
        "{text}"
    );
    // So does the caller's.
    let e = BAD_REPLY.call(&conn, &"x".into()).await.unwrap_err();
    match &e {
        Error::Codec {
            handler: 22,
            name: Some(name),
            message,
        } => {
            assert_eq!(name, "bad.reply");
            assert!(message.starts_with("decode response: "), "{message}");
        }
        e => panic!("unexpected {e:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("handler 22 \"bad.reply\": decode response: "),
        "{e}"
    );
    wait_for("six calls observed", Duration::from_secs(10), || {
        n.seen.lock().unwrap().len() == 6
    })
    .await;
    let mut seen = n.seen.lock().unwrap().clone();
    // By handler; the two calls to 12 stay in call order (the observer runs before the
    // answer is sent, and the sort is stable).
    seen.sort_by_key(|r| r.1);
    let named = |s: &str| Some(s.to_string());
    let ok = CallOutcome::Ok;
    assert_eq!(
        seen,
        vec![
            (CallKind::Single, 12, named("kv.get"), None, ok.clone()),
            (
                CallKind::Single,
                12,
                named("kv.get"),
                None,
                CallOutcome::RemoteError(text.to_string())
            ),
            (
                CallKind::Stream,
                16,
                named("kv.scan"),
                named("kv/1"),
                ok.clone()
            ),
            (
                CallKind::Single,
                21,
                named("disk.read"),
                named("d1"),
                ok.clone()
            ),
            (CallKind::Single, 22, None, None, ok.clone()),
            (CallKind::Single, 78, None, None, ok),
        ]
    );
    n.a.shutdown();
    n.b.shutdown();
}

/// The callee's texts on the wire are MinIO's, whatever names its registrations carry.
#[tokio::test]
async fn wire_texts_stay_minio_s() {
    let n = nodes().await;
    let io = n.net.connect_raw(&n.fake, B).unwrap();
    let (mut p, code) = RawPeer::upgrade(io, "b:9000", "/minio/grid/v1", "names").await;
    assert_eq!(code, 101);
    assert!(
        p.handshake(&n.fake, "names", GridTime::now())
            .await
            .accepted
    );
    let sub = SubrouteId::new(21, "d2");
    // 21 is registered as "disk.read" under subroute d1 only; 17 is not registered.
    for (mux, op, handler, subroute, want) in [
        (
            1,
            Op::Request,
            21,
            None,
            "Invalid Handler for type: ServerVerify".to_string(),
        ),
        (
            2,
            Op::Request,
            21,
            Some(sub),
            format!("Invalid Handler for type: {}", sub.to_go_bytes_string()),
        ),
        (
            3,
            Op::ConnectMux,
            17,
            None,
            "Invalid Handler for type: CheckParts".to_string(),
        ),
        (4, Op::Request, 0, None, "Invalid Handler".to_string()),
    ] {
        let mut m = Message::new(op, mux);
        m.handler = handler;
        m.subroute = subroute;
        p.send(&m).await;
        let r = p.recv_op(Op::MuxConnectError).await.unwrap();
        assert_eq!(r.mux_id, mux);
        assert_eq!(
            MuxConnectErrorPayload::decode(&r.payload).unwrap().error,
            want
        );
    }
    n.a.shutdown();
    n.b.shutdown();
}
