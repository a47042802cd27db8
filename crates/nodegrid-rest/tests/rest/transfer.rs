//! Large streamed transfers: bounded buffering, built-in methods, and a server dying mid-way.

use crate::common::*;
use nodegrid_rest::{HandlerError, RequestBody, RestError, RestReply, RestRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most bytes allowed in flight between producer and consumer: socket buffers plus hyper's
/// buffers are a few MiB on loopback; buffering a whole body would be 1 GiB.
const MAX_IN_FLIGHT: u64 = 64 * MIB;

fn counting_sink(
    flow: Arc<Flow>,
) -> impl Fn(RestRequest) -> futures_util::future::BoxFuture<'static, Result<RestReply, HandlerError>>
       + Send
       + Sync
       + 'static {
    move |mut req: RestRequest| {
        let flow = flow.clone();
        Box::pin(async move {
            let mut total = 0u64;
            while let Some(chunk) = req.body_mut().chunk().await {
                let chunk = chunk.map_err(|e| HandlerError::bad_request(e.to_string()))?;
                flow.consume(chunk.len() as u64);
                total += chunk.len() as u64;
            }
            Ok(RestReply::bytes(total.to_string()))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_1gib_streams_with_bounded_buffering() {
    init_tracing();
    let flow = Arc::new(Flow::default());
    let server = server()
        .handler("count", counting_sink(flow.clone()))
        .build()
        .expect("config");
    let handle = start(server.router()).await;
    let client = client_for(&handle).build().expect("client");

    let started = Instant::now();
    let body = RequestBody::from_stream(counted_stream(flow.clone(), GIB));
    let resp = within(
        Duration::from_secs(60),
        "1 GiB upload",
        client.call("count", &[], body),
    )
    .await
    .expect("upload");
    let answer = resp.bytes(64).await.expect("answer");
    assert_eq!(
        std::str::from_utf8(&answer).ok(),
        Some(GIB.to_string().as_str())
    );
    assert_eq!(flow.consumed.load(std::sync::atomic::Ordering::SeqCst), GIB);
    let peak = flow.peak();
    assert!(peak <= MAX_IN_FLIGHT, "{peak} bytes were in flight at once");
    let stats = client.stats();
    assert_eq!(stats.bytes_sent, GIB);
    assert_eq!(stats.errors, 0);
    eprintln!(
        "1 GiB upload: {:?}, peak in flight {} KiB",
        started.elapsed(),
        peak / 1024
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_1gib_streams_with_bounded_buffering() {
    init_tracing();
    let flow = Arc::new(Flow::default());
    let f = flow.clone();
    let server = server()
        .handler("emit", move |_req: RestRequest| {
            let f = f.clone();
            async move { Ok(RestReply::stream(counted_stream(f, GIB))) }
        })
        .build()
        .expect("config");
    let handle = start(server.router()).await;
    let client = client_for(&handle).build().expect("client");

    let started = Instant::now();
    let mut resp = within(
        Duration::from_secs(10),
        "download head",
        client.call("emit", &[], ()),
    )
    .await
    .expect("call");
    let mut total = 0u64;
    within(Duration::from_secs(60), "1 GiB download", async {
        while let Some(chunk) = resp.body_mut().chunk().await {
            let n = chunk.expect("chunk").len() as u64;
            flow.consume(n);
            total += n;
        }
    })
    .await;
    assert_eq!(total, GIB);
    let peak = flow.peak();
    assert!(peak <= MAX_IN_FLIGHT, "{peak} bytes were in flight at once");
    assert_eq!(client.stats().bytes_received, GIB);
    eprintln!(
        "1 GiB download: {:?}, peak in flight {} KiB",
        started.elapsed(),
        peak / 1024
    );
}

#[tokio::test]
async fn builtin_sink_and_source() {
    init_tracing();
    let handle = start(server().build().expect("config").router()).await;
    let client = client_for(&handle).build().expect("client");

    let flow = Arc::new(Flow::default());
    let body = RequestBody::from_stream(counted_stream(flow, 64 * MIB + 3));
    let resp = within(
        Duration::from_secs(30),
        "sink",
        client.call("sink", &[], body),
    )
    .await
    .expect("sink");
    assert_eq!(
        &resp.bytes(64).await.expect("answer")[..],
        (64 * MIB + 3).to_string().as_bytes()
    );

    let size = 10 * MIB + 7;
    let resp = within(
        Duration::from_secs(30),
        "source",
        client.call("source", &[("size", &size.to_string())], ()),
    )
    .await
    .expect("source");
    let n = within(
        Duration::from_secs(30),
        "source body",
        resp.into_body().drain(),
    )
    .await
    .expect("drain");
    assert_eq!(n, size);

    let empty = client
        .call("source", &[("size", "0")], ())
        .await
        .expect("source 0");
    assert_eq!(empty.into_body().drain().await.expect("drain"), 0);

    for bad in [vec![], vec![("size", "-1")], vec![("size", "lots")]] {
        match client.call("source", &bad, ()).await {
            Err(RestError::Remote {
                status: 400,
                message,
                ..
            }) => assert!(message.contains("size"), "{message}"),
            other => panic!("source {bad:?}: expected a 400, got {other:?}"),
        }
    }
    assert!(client.is_online());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_download_is_a_network_error_and_marks_offline() {
    init_tracing();
    let handle = start(server().build().expect("config").router()).await;
    let client = client_for(&handle).build().expect("client");
    let mut online = client.watch_online();

    let size = GIB.to_string();
    let mut resp = client
        .call("source", &[("size", &size)], ())
        .await
        .expect("call");
    let mut got = 0u64;
    while got < 8 * MIB {
        let chunk = within(
            Duration::from_secs(10),
            "first MiBs",
            resp.body_mut().chunk(),
        )
        .await;
        got += chunk.expect("not at the end").expect("chunk").len() as u64;
    }
    within(Duration::from_secs(10), "kill", handle.kill()).await;

    let err = within(Duration::from_secs(10), "error after kill", async {
        loop {
            match resp.body_mut().chunk().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("body ended cleanly although the server was killed"),
            }
        }
    })
    .await;
    assert!(matches!(err, RestError::Network { .. }), "{err:?}");
    assert!(!client.is_online());
    within(
        Duration::from_secs(1),
        "offline transition",
        online.wait_for(|on| !*on),
    )
    .await
    .expect("watch");
    let stats = client.stats();
    assert_eq!(
        (stats.network_errors, stats.errors, stats.offline_periods),
        (1, 1, 1),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_upload_is_a_network_error_and_marks_offline() {
    init_tracing();
    let reached = Arc::new(Notify::new());
    let r = reached.clone();
    let server = server()
        .handler("slow-sink", move |mut req: RestRequest| {
            let r = r.clone();
            async move {
                let mut total = 0u64;
                while let Some(chunk) = req.body_mut().chunk().await {
                    total += chunk
                        .map_err(|e| HandlerError::bad_request(e.to_string()))?
                        .len() as u64;
                    if total >= 8 * MIB {
                        r.notify_one();
                    }
                }
                Ok(RestReply::bytes(total.to_string()))
            }
        })
        .build()
        .expect("config");
    let handle = start(server.router()).await;
    let client = client_for(&handle).build().expect("client");

    let flow = Arc::new(Flow::default());
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.call(
            "slow-sink",
            &[],
            RequestBody::from_stream(counted_stream(flow, GIB)),
        )
        .await
        .map(|_| ())
    });
    within(
        Duration::from_secs(10),
        "8 MiB received",
        reached.notified(),
    )
    .await;
    within(Duration::from_secs(10), "kill", handle.kill()).await;
    let result = within(Duration::from_secs(10), "call to fail", call)
        .await
        .expect("join");
    match result {
        Err(e) => assert!(e.is_network(), "{e:?}"),
        Ok(()) => panic!("upload succeeded although the server was killed"),
    }
    assert!(!client.is_online());
    assert_eq!(client.stats().offline_periods, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_client() {
    init_tracing();
    let handle = start(server().build().expect("config").router()).await;
    let client = client_for(&handle).build().expect("client");
    let size = 4 * MIB + 1;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u64 {
        let c = client.clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                let resp = c.call("source", &[("size", &size.to_string())], ()).await?;
                resp.into_body().drain().await
            } else {
                let body = RequestBody::from_stream(nodegrid_rest::builtin::repeat_bytes(size));
                let answer = c.call("sink", &[], body).await?.bytes(64).await?;
                Ok(std::str::from_utf8(&answer)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0))
            }
        });
    }
    let mut done = 0;
    while let Some(r) = within(
        Duration::from_secs(30),
        "concurrent calls",
        tasks.join_next(),
    )
    .await
    {
        assert_eq!(r.expect("join").expect("call"), size);
        done += 1;
    }
    assert_eq!(done, 16);
    let s = client.stats();
    assert_eq!((s.calls, s.errors), (16, 0));
    assert_eq!(
        (s.bytes_sent, s.bytes_received),
        (8 * size, 8 * size + 8 * 7)
    );
    assert!(s.dials <= 16);
}
