//! Single requests between in-process nodes on loopback.

mod common;

use bytes::Bytes;
use common::{cluster, wait_for};
use nodegrid::handler::Request;
use nodegrid::{CallOptions, Error, GridConfig, Manager, RemoteError, UnknownHandlerKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ECHO: u8 = 78;
const FAIL: u8 = 79;
const EMPTY: u8 = 10;
const INSPECT: u8 = 11;

fn setup(m: &Manager) {
    m.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    m.register_single(FAIL, |r: Request| async move {
        Err::<Bytes, _>(RemoteError::new(
            String::from_utf8_lossy(&r.bytes()).into_owned(),
        ))
    })
    .unwrap();
    m.register_single(EMPTY, |_r: Request| async move {
        Ok::<_, RemoteError>(Bytes::new())
    })
    .unwrap();
    // Reports whether the payload arrived absent, and who called through which subroute.
    m.register_single(INSPECT, |r: Request| async move {
        Ok::<_, RemoteError>(Bytes::from(format!(
            "absent={} caller={} sub={:?}",
            r.payload.is_none(),
            r.caller,
            r.subroute
        )))
    })
    .unwrap();
    m.register_single_subroute(ECHO, "disk/1", |r: Request| async move {
        let mut v = b"disk1:".to_vec();
        v.extend_from_slice(&r.bytes());
        Ok::<_, RemoteError>(Bytes::from(v))
    })
    .unwrap();
    m.register_single_subroute(ECHO, "disk/2", |r: Request| async move {
        let mut v = b"disk2:".to_vec();
        v.extend_from_slice(&r.bytes());
        Ok::<_, RemoteError>(Bytes::from(v))
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_error_large_and_empty() {
    let c = cluster(2, GridConfig::default(), setup).await;
    for (a, b) in [(0, 1), (1, 0)] {
        let conn = c.conn(a, b);
        assert_eq!(&conn.request(ECHO, "hello").await.unwrap()[..], b"hello");
        let e = conn.request(FAIL, "boom").await.unwrap_err();
        assert_eq!(e, Error::Remote(RemoteError::new("boom")));
        assert_eq!(e.to_string(), "boom");
        let big = Bytes::from((0..(1 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        assert_eq!(conn.request(ECHO, big.clone()).await.unwrap(), big);
        let kib_err = "e".repeat(1024);
        assert_eq!(
            conn.request(FAIL, kib_err.clone())
                .await
                .unwrap_err()
                .remote_text(),
            Some(&kib_err[..])
        );
        // Empty request arrives as absent; an empty response arrives as present-but-empty.
        let r = conn
            .call(INSPECT, Some(Bytes::new()), CallOptions::new())
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&r).starts_with("absent=true"),
            "{r:?}"
        );
        let r = conn
            .call(INSPECT, Some(Bytes::from_static(b"x")), CallOptions::new())
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&r).starts_with("absent=false"));
        assert_eq!(
            conn.call(EMPTY, None, CallOptions::new()).await.unwrap(),
            Some(Bytes::new())
        );
        let r = conn
            .call(INSPECT, None, CallOptions::new())
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&r).contains(&format!("caller={}", c.hosts[a])),
            "{r:?}"
        );
    }
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_handler_and_subroutes() {
    let c = cluster(2, GridConfig::default(), setup).await;
    let conn = c.conn(0, 1);
    let remote = c.hosts[1].clone();
    // The callee answers "Invalid Handler for type: WriteAll" (MinIO's name of 70, on the
    // wire unchanged); the caller gets the typed error naming what it called and where.
    let e = conn.request(70, "x").await.unwrap_err();
    assert_eq!(
        e,
        Error::UnknownHandler {
            handler: 70,
            name: None,
            subroute: None,
            remote: remote.clone(),
            kind: UnknownHandlerKind::NotOnRemote,
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "handler 70 is not registered on {remote}: check the handler ID, and that the node \
             runs a version that registers it"
        )
    );
    assert_eq!(e.remote_text(), None);
    let e = conn.request(0, "x").await.unwrap_err();
    assert_eq!(
        e,
        Error::UnknownHandler {
            handler: 0,
            name: None,
            subroute: None,
            remote: remote.clone(),
            kind: UnknownHandlerKind::ReservedId,
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "handler 0 is reserved and never registered (call to {remote}): use a handler ID \
             from 1 to 255"
        )
    );
    assert_eq!(
        &conn.subroute("disk/1").request(ECHO, "a").await.unwrap()[..],
        b"disk1:a"
    );
    assert_eq!(
        &conn
            .subroute("disk")
            .subroute("2")
            .request(ECHO, "b")
            .await
            .unwrap()[..],
        b"disk2:b"
    );
    // A subroute miss: the callee's text lists 32 hash bytes; the caller names the subroute.
    let e = conn
        .subroute("disk/3")
        .request(ECHO, "c")
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::UnknownHandler {
            handler: ECHO,
            name: None,
            subroute: Some("disk/3".into()),
            remote: remote.clone(),
            kind: UnknownHandlerKind::NotOnRemote,
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "handler 78 (subroute disk/3) is not registered on {remote}: check the handler ID \
             and subroute, and that the node runs a version that registers it"
        )
    );
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_requests() {
    let c = cluster(2, GridConfig::default(), setup).await;
    let conn = c.conn(0, 1);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10_000u32 {
        let conn = conn.clone();
        set.spawn(async move {
            let p = Bytes::from(i.to_le_bytes().to_vec());
            let r = conn.request(ECHO, p.clone()).await;
            (p, r)
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        let (p, r) = r.unwrap();
        assert_eq!(r.unwrap(), p);
        ok += 1;
    }
    assert_eq!(ok, 10_000);
    let st = conn.stats();
    assert_eq!(st.requests_out, 10_000);
    assert!(
        st.ws_messages_out < st.messages_out,
        "merging happened: {st:?}"
    );
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_of_three_and_eight_nodes() {
    for n in [3usize, 8] {
        let c = cluster(n, GridConfig::default(), setup).await;
        let mut calls = 0;
        for a in 0..n {
            for b in 0..n {
                if a == b {
                    continue;
                }
                let msg = format!("{a}->{b}");
                assert_eq!(
                    c.conn(a, b).request(ECHO, msg.clone()).await.unwrap(),
                    Bytes::from(msg)
                );
                calls += 1;
            }
        }
        assert_eq!(calls, n * (n - 1));
        // Exactly one side of each pair dials.
        let dialers: usize = c
            .nodes
            .iter()
            .map(|m| m.connections().iter().filter(|x| x.is_dialer()).count())
            .sum();
        assert_eq!(dialers, n * (n - 1) / 2);
        c.assert_no_muxes().await;
        c.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_and_cancellation_reach_the_callee() {
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = async_channel();
    let cc = cancelled.clone();
    let c = cluster(2, GridConfig::default(), move |m| {
        setup(m);
        let cc = cc.clone();
        let started_tx = started_tx.clone();
        m.register_single(20, move |r: Request| {
            let cc = cc.clone();
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                r.cancel.cancelled().await;
                cc.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(Bytes::new())
            }
        })
        .unwrap();
    })
    .await;
    let conn = c.conn(0, 1);
    // Deadline exceeded: the caller gets the error and the callee's token fires.
    let e = conn
        .call(
            20,
            None,
            CallOptions::new().timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert_eq!(e, Error::DeadlineExceeded);
    wait_for("condition", Duration::from_secs(10), || {
        cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    // Dropping the call future cancels the remote handler.
    let conn2 = conn.clone();
    let call = tokio::spawn(async move { conn2.request(20, "x").await });
    let mut rx = started_rx;
    rx.recv().await.unwrap();
    rx.recv().await.unwrap();
    call.abort();
    wait_for("condition", Duration::from_secs(10), || {
        cancelled.load(Ordering::SeqCst) == 2
    })
    .await;
    c.assert_no_muxes().await;
    c.shutdown();
}

fn async_channel() -> (
    tokio::sync::mpsc::UnboundedSender<()>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    tokio::sync::mpsc::unbounded_channel()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_session_fails_blocked_call_and_reconnects() {
    let c = cluster(2, GridConfig::default(), move |m| {
        setup(m);
        m.register_single(21, |_r: Request| async move {
            std::future::pending::<()>().await;
            Ok::<_, RemoteError>(Bytes::new())
        })
        .unwrap();
    })
    .await;
    for (a, b) in [(0, 1), (1, 0)] {
        let conn = c.conn(a, b);
        let before = conn.stats().connects;
        let conn2 = conn.clone();
        let blocked = tokio::spawn(async move { conn2.request(21, "x").await });
        wait_for("condition", Duration::from_secs(10), || {
            conn.mux_counts().outgoing == 1
        })
        .await;
        let t0 = tokio::time::Instant::now();
        conn.kill_session();
        let r = tokio::time::timeout(Duration::from_secs(1), blocked)
            .await
            .expect("fails within 1 s")
            .unwrap();
        assert_eq!(r.unwrap_err(), Error::Disconnected);
        assert!(t0.elapsed() < Duration::from_secs(1));
        conn.wait_connected(Duration::from_secs(10)).await.unwrap();
        wait_for("condition", Duration::from_secs(10), || {
            c.conn(b, a).state().is_connected()
        })
        .await;
        assert_eq!(&conn.request(ECHO, "again").await.unwrap()[..], b"again");
        assert!(conn.stats().connects > before);
    }
    c.assert_no_muxes().await;
    c.shutdown();
}

struct PanicsInCall;

impl nodegrid::handler::SingleHandler for PanicsInCall {
    fn call(
        &self,
        _req: Request,
    ) -> futures::future::BoxFuture<'static, Result<Bytes, RemoteError>> {
        panic!("boom in call")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_is_a_remote_error() {
    let c = cluster(2, GridConfig::default(), |m| {
        m.register_single(22, |_r: Request| async move {
            if true {
                panic!("kaboom");
            }
            Ok::<_, RemoteError>(Bytes::new())
        })
        .unwrap();
        // A handler that panics in `call` itself, before it returns a future.
        m.register_single(23, PanicsInCall).unwrap();
        m.register_single(
            ECHO,
            |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
        )
        .unwrap();
    })
    .await;
    let conn = c.conn(0, 1);
    let e = conn.request(22, "x").await.unwrap_err();
    assert_eq!(
        e.remote_text(),
        Some("handleMessages: panic recovered: kaboom")
    );
    let e = conn.request(23, "x").await.unwrap_err();
    assert_eq!(
        e.remote_text(),
        Some("handleMessages: panic recovered: boom in call")
    );
    assert_eq!(
        &conn.request(ECHO, "still up").await.unwrap()[..],
        b"still up"
    );
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_distinct_error_texts_arrive_intact() {
    let c = cluster(2, GridConfig::default(), setup).await;
    let conn = c.conn(0, 1);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..2000 {
        let conn = conn.clone();
        set.spawn(async move {
            let text = format!("error number {i} {}", "x".repeat(i % 300));
            let e = conn.request(FAIL, text.clone()).await.unwrap_err();
            assert_eq!(e.remote_text(), Some(&text[..]));
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, 2000);
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_growth_after_100k_requests() {
    let c = cluster(2, GridConfig::default(), setup).await;
    let conn = c.conn(0, 1);
    let rt = tokio::runtime::Handle::current();
    // Warm up, then measure the live task count before and after.
    for _ in 0..100 {
        conn.request(ECHO, "w").await.unwrap();
    }
    let tasks_before = rt.metrics().num_alive_tasks();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..64u32 {
        let conn = conn.clone();
        let sub = conn.subroute("disk/1");
        set.spawn(async move {
            for i in 0..(100_000 / 64 + 1) {
                if (i + w) % 2 == 0 {
                    conn.request(ECHO, "p").await.unwrap();
                } else {
                    sub.request(ECHO, "p").await.unwrap();
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert!(conn.stats().requests_out >= 100_000);
    c.assert_no_muxes().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = rt.metrics().num_alive_tasks();
        if now <= tasks_before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks grew from {tasks_before} to {now}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(conn.stats().outbound_queue, 0);
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_4k_messages_in_parallel() {
    let c = cluster(2, GridConfig::default(), setup).await;
    let conn = c.conn(0, 1);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..2000u32 {
        let conn = conn.clone();
        set.spawn(async move {
            let p = Bytes::from(vec![(i % 251) as u8; 4096]);
            assert_eq!(conn.request(ECHO, p.clone()).await.unwrap(), p);
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        r.unwrap();
        n += 1;
    }
    assert_eq!(n, 2000);
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_grids_on_different_routes_are_independent() {
    common::init_tracing();
    let mut listeners = Vec::new();
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        hosts.push(format!("http://{}", l.local_addr().unwrap()));
        listeners.push(l);
    }
    let mut grids = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let mk = |route: &str| {
            Manager::builder(hosts[i].clone(), hosts.clone())
                .route(route)
                .auth(nodegrid::auth::Auth::shared_token("t"))
                .build()
                .unwrap()
        };
        let common = mk(nodegrid::DEFAULT_ROUTE);
        let lock = mk(nodegrid::LOCK_ROUTE);
        common
            .register_single(ECHO, |r: Request| async move {
                Ok::<_, RemoteError>(Bytes::from(format!(
                    "common:{}",
                    String::from_utf8_lossy(&r.bytes())
                )))
            })
            .unwrap();
        lock.register_single(ECHO, |r: Request| async move {
            Ok::<_, RemoteError>(Bytes::from(format!(
                "lock:{}",
                String::from_utf8_lossy(&r.bytes())
            )))
        })
        .unwrap();
        let app = common.router().merge(lock.router());
        tokio::spawn(async move { axum::serve(l, app).await });
        grids.push((common, lock));
    }
    for (common, lock) in &grids {
        common
            .wait_all_connected(Duration::from_secs(10))
            .await
            .unwrap();
        lock.wait_all_connected(Duration::from_secs(10))
            .await
            .unwrap();
    }
    let cc = grids[0].0.connection(&hosts[1]).unwrap();
    let lc = grids[0].1.connection(&hosts[1]).unwrap();
    assert_eq!(&cc.request(ECHO, "a").await.unwrap()[..], b"common:a");
    assert_eq!(&lc.request(ECHO, "a").await.unwrap()[..], b"lock:a");
    // Killing the common grid's session leaves the lock grid alone.
    cc.kill_session();
    assert_eq!(&lc.request(ECHO, "b").await.unwrap()[..], b"lock:b");
    assert_eq!(lc.stats().connects, 1);
    cc.wait_connected(Duration::from_secs(10)).await.unwrap();
    assert_eq!(&cc.request(ECHO, "c").await.unwrap()[..], b"common:c");
    for (a, b) in &grids {
        a.shutdown();
        b.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_in_flight_calls_and_the_peer_sees_the_disconnect() {
    let started = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (st, seen) = (started.clone(), cancelled.clone());
    let c = cluster(2, GridConfig::default(), move |m| {
        setup(m);
        let (st, seen) = (st.clone(), seen.clone());
        m.register_single(21, move |r: Request| {
            let (st, seen) = (st.clone(), seen.clone());
            async move {
                st.fetch_add(1, Ordering::SeqCst);
                r.cancel.cancelled().await;
                seen.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RemoteError>(Bytes::new())
            }
        })
        .unwrap();
    })
    .await;
    // Node 0 calls node 1 and node 1 calls node 0; then node 0 shuts down.
    let out = c.conn(0, 1);
    let inc = c.conn(1, 0);
    let (o2, i2) = (out.clone(), inc.clone());
    let outgoing = tokio::spawn(async move { o2.request(21, "x").await });
    let incoming = tokio::spawn(async move { i2.request(21, "y").await });
    // Both handlers running (not just both requests sent), so both can be cancelled.
    wait_for("both handlers running", Duration::from_secs(10), || {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    c.nodes[0].shutdown();
    let r = tokio::time::timeout(Duration::from_secs(5), outgoing)
        .await
        .expect("the shut-down node's call ends at once")
        .unwrap();
    assert!(
        matches!(r, Err(Error::Disconnected) | Err(Error::Shutdown)),
        "{r:?}"
    );
    let r = tokio::time::timeout(Duration::from_secs(5), incoming)
        .await
        .expect("the peer's call ends when the session closes")
        .unwrap();
    assert_eq!(r.unwrap_err(), Error::Disconnected);
    // Both handlers (one on each node) were cancelled.
    wait_for("handlers cancelled", Duration::from_secs(5), || {
        cancelled.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(matches!(out.state(), nodegrid::ConnState::Shutdown));
    assert_eq!(out.request(ECHO, "z").await.unwrap_err(), Error::Shutdown);
    c.shutdown();
}
