//! Offline detection: fail fast while offline, and come back through the health check.

use crate::common::*;
use nodegrid::auth::time_header_value;
use nodegrid_rest::{RestError, DEFAULT_PREFIX, DEFAULT_VERSION};
use std::time::{Duration, Instant, SystemTime};

#[tokio::test]
async fn calls_while_offline_fail_fast_without_touching_the_network() {
    init_tracing();
    let handle = start(server().build().expect("config").router()).await;
    let addr = handle.local_addr();
    // A long backoff: no health check runs during the test, so the only possible connection
    // attempts are the calls'.
    let client = client_for(&handle)
        .health_check_backoff(Duration::from_secs(600), Duration::from_secs(600))
        .build()
        .expect("client");
    client.call("sink", &[], "x").await.expect("first call");

    within(Duration::from_secs(10), "kill", handle.kill()).await;
    let err = client
        .call("sink", &[], "x")
        .await
        .expect_err("server is dead");
    assert!(err.is_network(), "{err:?}");
    assert!(!client.is_online());

    // The peer is back on the same port, but the client has not noticed yet.
    let handle = start_at(addr, server().build().expect("config").router()).await;
    let before = client.stats();
    let started = Instant::now();
    for _ in 0..100 {
        match client.call("sink", &[], "x").await {
            Err(RestError::PeerOffline { peer }) => assert_eq!(peer, format!("http://{addr}")),
            other => panic!("expected PeerOffline, got {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "100 offline calls took {took:?}"
    );
    let after = client.stats();
    assert_eq!(after.offline_rejections - before.offline_rejections, 100);
    assert_eq!(
        (after.dials, after.failed_dials),
        (before.dials, before.failed_dials),
        "no dial while offline"
    );

    // Nothing reached the server: a sentinel connection made now is served as the very first
    // one (the listener accepts in order, so an earlier attempt would be counted before it).
    let now = time_header_value(SystemTime::now());
    let path = format!("{DEFAULT_PREFIX}/{DEFAULT_VERSION}/health");
    let status = within(
        Duration::from_secs(5),
        "sentinel",
        raw_status(addr, &raw_head("GET", &path, addr, Some((TOKEN, &now)))),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        handle.accepted_connections(),
        1,
        "the offline calls opened connections"
    );
}

#[tokio::test]
async fn restarted_server_comes_back_online_within_the_backoff_bound() {
    init_tracing();
    let start_backoff = Duration::from_millis(200);
    let max_backoff = Duration::from_secs(1);
    let check_timeout = Duration::from_secs(1);
    let handle = start(server().build().expect("config").router()).await;
    let addr = handle.local_addr();
    let client = client_for(&handle)
        .health_check_backoff(start_backoff, max_backoff)
        .health_check_timeout(check_timeout)
        .build()
        .expect("client");
    let mut online = client.watch_online();
    client.call("sink", &[], "x").await.expect("first call");

    within(Duration::from_secs(10), "kill", handle.kill()).await;
    let err = client
        .call("sink", &[], "x")
        .await
        .expect_err("server is dead");
    assert!(err.is_network(), "{err:?}");
    let went_offline = Instant::now();
    within(
        Duration::from_secs(1),
        "offline",
        online.wait_for(|on| !*on),
    )
    .await
    .expect("watch");

    // Stay down long enough for several failed checks (0.2 + 0.4 + 0.8 s), so the backoff has
    // reached its cap when the server returns.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!client.is_online(), "online while the server is down");
    let restarted = Instant::now();
    let _handle = start_at(addr, server().build().expect("config").router()).await;

    // The next check comes at most one capped wait later and takes at most its timeout.
    let bound = max_backoff + check_timeout + Duration::from_millis(500);
    within(
        bound,
        "back online through the health check",
        online.wait_for(|on| *on),
    )
    .await
    .expect("watch");
    let back = restarted.elapsed();
    assert!(went_offline.elapsed() >= start_backoff);
    eprintln!("back online {back:?} after the restart");

    let resp = client
        .call("sink", &[], "abc")
        .await
        .expect("call after recovery");
    assert_eq!(&resp.bytes(16).await.expect("answer")[..], b"3");
    let stats = client.stats();
    assert!(stats.online);
    assert_eq!(stats.offline_periods, 1);
    assert!(stats.offline_total_ns >= 1_500_000_000, "{stats:?}");
}

#[tokio::test]
async fn a_peer_that_accepts_but_never_answers_stays_offline() {
    init_tracing();
    let handle = start(server().build().expect("config").router()).await;
    let addr = handle.local_addr();
    let client = client_for(&handle)
        .health_check_backoff(Duration::from_millis(100), Duration::from_millis(100))
        .health_check_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    within(Duration::from_secs(10), "kill", handle.kill()).await;
    assert!(client
        .call("sink", &[], "x")
        .await
        .expect_err("dead")
        .is_network());

    // A listener that accepts and holds connections without ever answering: each health
    // check must give up after its timeout and try again with a new connection.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let mute = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            if tx.send(held.len()).await.is_err() {
                break;
            }
        }
    });
    within(Duration::from_secs(5), "three health checks", async {
        while let Some(n) = rx.recv().await {
            if n >= 3 {
                break;
            }
        }
    })
    .await;
    assert!(
        !client.is_online(),
        "a peer that never answers was marked online"
    );
    mute.abort();
}
