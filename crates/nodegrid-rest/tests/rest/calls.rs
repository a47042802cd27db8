//! Single calls: authentication, typed errors, deadlines, keep-alive and exact stats.

use crate::common::*;
use bytes::Bytes;
use nodegrid::auth::{time_header_value, Auth};
use nodegrid_rest::{
    HandlerError, RequestBody, RestClient, RestError, RestReply, RestRequest, DEFAULT_PREFIX,
    DEFAULT_VERSION,
};
use std::time::{Duration, SystemTime};

#[tokio::test]
async fn auth_failure_is_typed_and_keeps_the_peer_online() {
    init_tracing();
    let handle = start(server().build().expect("config").router()).await;
    let bad = RestClient::builder(
        format!("http://{}", handle.local_addr()),
        Auth::shared_token("wrong"),
    )
    .build()
    .expect("client");
    for _ in 0..3 {
        match bad.call("sink", &[], "payload").await {
            Err(RestError::Auth { message, .. }) => {
                assert!(message.contains("Authentication failed"), "{message}")
            }
            other => panic!("expected an auth error, got {other:?}"),
        }
    }
    assert!(bad.is_online());
    let s = bad.stats();
    assert_eq!(
        (
            s.calls,
            s.errors,
            s.auth_errors,
            s.network_errors,
            s.offline_periods
        ),
        (3, 3, 3, 0, 0)
    );

    let good = client_for(&handle).build().expect("client");
    good.call("sink", &[], "payload")
        .await
        .expect("right token works");
}

#[tokio::test]
async fn server_checks_bearer_and_time_header() {
    init_tracing();
    let handle = start(server().build().expect("config").router()).await;
    let addr = handle.local_addr();
    let sink = format!("{DEFAULT_PREFIX}/{DEFAULT_VERSION}/sink");
    let now = time_header_value(SystemTime::now());
    let stale = time_header_value(SystemTime::now() - Duration::from_secs(16 * 60));
    let cases = [
        (None, 403),
        (Some((TOKEN, "not-a-number")), 403),
        (Some((TOKEN, stale.as_str())), 403),
        (Some(("wrong", now.as_str())), 403),
        (Some((TOKEN, now.as_str())), 200),
    ];
    for (headers, want) in cases {
        let got = within(
            Duration::from_secs(5),
            "raw request",
            raw_status(addr, &raw_head("POST", &sink, addr, headers)),
        )
        .await;
        assert_eq!(got, want, "headers {headers:?}");
    }
    let health = format!("{DEFAULT_PREFIX}/{DEFAULT_VERSION}/health");
    assert_eq!(
        raw_status(addr, &raw_head("GET", &health, addr, None)).await,
        403
    );
    assert_eq!(
        raw_status(addr, &raw_head("GET", &health, addr, Some((TOKEN, &now)))).await,
        200
    );
}

#[tokio::test]
async fn stats_match_the_calls_made_and_connections_are_reused() {
    init_tracing();
    let server = server()
        .handler("refuse", |_req: RestRequest| async {
            Err::<RestReply, _>(HandlerError::bad_request("no thanks"))
        })
        .handler("hang", |_req: RestRequest| async {
            std::future::pending::<()>().await;
            Ok(RestReply::empty())
        })
        .handler("trickle", |_req: RestRequest| async {
            let first = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
                Bytes::from_static(b"first"),
            )]);
            let never = futures_util::stream::pending();
            Ok(RestReply::stream(futures_util::StreamExt::chain(
                first, never,
            )))
        })
        .build()
        .expect("config");
    let handle = start(server.router()).await;
    let client = client_for(&handle).build().expect("client");

    // 5 successful calls of 1000 bytes each: answers "1000", 4 bytes each.
    for _ in 0..5 {
        let resp = client
            .call("sink", &[], vec![7u8; 1000])
            .await
            .expect("sink");
        assert_eq!(&resp.bytes(16).await.expect("answer")[..], b"1000");
    }
    let s = client.stats();
    assert_eq!(
        (s.calls, s.errors, s.bytes_sent, s.bytes_received),
        (5, 0, 5000, 20)
    );
    // Keep-alive: sequential calls reuse the pooled connection. (Not always exactly one:
    // hyper-util starts a dial when the previous call's connection has not yet gone back to
    // the pool, and then keeps whichever is ready first.)
    assert!(s.dials >= 1 && s.dials < 5, "{} dials for 5 calls", s.dials);
    assert!(handle.accepted_connections() < 5);
    assert!(s.avg_dial_time_ns > 0 && s.max_dial_time_ns >= s.avg_dial_time_ns);
    assert!(s.avg_ttfb_ns > 0);
    assert_eq!(s.last_error_unix_nanos, None);

    // Two remote refusals, with their messages.
    let m1 = match client.call("refuse", &[("a", "b c&d")], ()).await {
        Err(RestError::Remote {
            status: 400,
            message,
            ..
        }) => message,
        other => panic!("expected 400, got {other:?}"),
    };
    assert_eq!(m1, "no thanks");
    let m2 = match client.call("no-such-method", &[], ()).await {
        Err(RestError::Remote {
            status: 404,
            message,
            ..
        }) => message,
        other => panic!("expected 404, got {other:?}"),
    };
    assert!(m2.contains("no-such-method"), "{m2}");

    // An invalid method name is refused before anything is sent.
    assert!(matches!(
        client.call("../x", &[], ()).await,
        Err(RestError::InvalidRequest { .. })
    ));

    // A failing request body: a typed error, and the peer stays online.
    let failing = futures_util::stream::iter([
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("disk on fire")),
    ]);
    match client
        .call("sink", &[], RequestBody::from_stream(failing))
        .await
    {
        Err(RestError::RequestBody { .. }) => {}
        other => panic!("expected a request body error, got {other:?}"),
    }

    // Deadlines: one before the answer, one while reading the body.
    let d = Duration::from_millis(300);
    match client.call_with_deadline("hang", &[], (), d).await {
        Err(RestError::Deadline { deadline, .. }) => assert_eq!(deadline, d),
        other => panic!("expected a deadline error, got {other:?}"),
    }
    let mut resp = client
        .call_with_deadline("trickle", &[], (), d)
        .await
        .expect("head arrives");
    let first = within(
        Duration::from_secs(5),
        "first chunk",
        resp.body_mut().chunk(),
    )
    .await;
    assert_eq!(&first.expect("chunk").expect("ok")[..], b"first");
    let next = within(
        Duration::from_secs(5),
        "deadline in body",
        resp.body_mut().chunk(),
    )
    .await;
    assert!(
        matches!(next, Some(Err(RestError::Deadline { .. }))),
        "{next:?}"
    );
    assert!(
        resp.body_mut().chunk().await.is_none(),
        "nothing after an error"
    );

    let s = client.stats();
    assert!(
        client.is_online(),
        "no call above should mark the peer offline"
    );
    assert_eq!(s.calls, 11);
    assert_eq!(s.remote_errors, 2);
    assert_eq!(s.deadline_errors, 2);
    assert_eq!(s.other_errors, 2, "invalid request and failing body");
    assert_eq!(
        (
            s.network_errors,
            s.dial_errors,
            s.auth_errors,
            s.offline_rejections
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(s.errors, 6);
    assert_eq!(s.bytes_sent, 5000 + 3);
    assert_eq!(s.bytes_received, 20 + m1.len() as u64 + m2.len() as u64 + 5);
    assert!(s.last_error_unix_nanos.is_some());
    assert_eq!(s.offline_periods, 0);

    let json = serde_json::to_value(&s).expect("serializable");
    assert_eq!(json["calls"], 11);
}
