//! Attacks on a running `nodegrid node`, each one a regression test: the node must answer bad
//! input with an error and keep serving, with bounded resources.
//!
//! The attacker is a grid peer inside the test process (it holds the cluster's token, as the
//! issue's attacker did), talking to a real `nodegrid node` process.

use bytes::Bytes;
use nodegrid::auth::Auth;
use nodegrid::{Connection, Error, Manager, StreamOptions};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "hardening-test-token";
/// The built-in handlers of `nodegrid node` (crates/nodegrid-cli/src/builtin.rs).
const ECHO: u8 = 78;
const TEST2: u8 = 79;

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Node {
    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

/// A `nodegrid node` process and a grid peer in this process, connected to each other.
async fn node_and_peer() -> (Node, Manager, Connection) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer_host = format!("http://{}", l.local_addr().unwrap());
    let node_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node_host = format!("http://127.0.0.1:{node_port}");
    let hosts = format!("{node_host},{peer_host}");
    let node = Node(
        Command::new(env!("CARGO_BIN_EXE_nodegrid"))
            .args(["node", "--local", &node_host, "--hosts", &hosts])
            .args(["--auth-token", TOKEN])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let peer = Manager::builder(
        peer_host,
        [
            node_host.clone(),
            hosts.split(',').nth(1).unwrap().to_string(),
        ],
    )
    .auth(Auth::shared_token(TOKEN))
    .build()
    .unwrap();
    tokio::spawn({
        let peer = peer.clone();
        async move { peer.serve(l).await }
    });
    let conn = peer.connection(&node_host).unwrap();
    conn.wait_connected(Duration::from_secs(30)).await.unwrap();
    (node, peer, conn)
}

/// Opens stream 79 with `payload` and reads it to its end: the remote error, if any, and the
/// bytes of output received.
async fn stream79(conn: &Connection, payload: &str) -> (Option<String>, usize) {
    let mut s = conn
        .open_stream(
            TEST2,
            Some(Bytes::from(payload.to_string())),
            StreamOptions::new()
                .capacities(0, 4)
                .timeout(Duration::from_secs(20)),
        )
        .await
        .unwrap();
    let (mut err, mut got) = (None, 0);
    while let Some(item) = s.recv().await {
        match item {
            Ok(b) => got += b.len(),
            Err(Error::Remote(e)) => err = Some(e.0),
            Err(e) => panic!("{payload}: unexpected error {e}"),
        }
    }
    (err, got)
}

/// Finding 1: the built-in stream 79 (`N:SIZE`) allocated SIZE bytes as the caller chose. One
/// 24-byte ConnectMux with `1:1099511627776` aborted the node; `1:2^63` panicked; `1:200000000`
/// took 388 MB. Each is now a remote error naming the limit, and the node keeps serving.
#[tokio::test]
async fn stream_79_refuses_sizes_over_the_message_limit_and_the_node_survives() {
    let (mut node, peer, conn) = node_and_peer().await;
    let max = nodegrid::GridConfig::default().max_message_size;
    let limit = nodegrid::wire::Limits {
        max_message_size: max,
    }
    .max_payload();
    for size in ["1099511627776", "9223372036854775808", "200000000"] {
        let want = format!(
            "invalid size {size}: at most {limit} bytes per message (max_message_size {max})"
        );
        assert_eq!(stream79(&conn, &format!("1:{size}")).await, (Some(want), 0));
        assert!(node.alive(), "the node died on 1:{size}");
    }
    // At the limit and below it still works, on the same session.
    assert_eq!(stream79(&conn, &format!("1:{limit}")).await, (None, limit));
    assert_eq!(stream79(&conn, "3:10").await, (None, 30));
    assert_eq!(&conn.request(ECHO, "alive").await.unwrap()[..], b"alive");
    assert!(node.alive());
    peer.shutdown();
}
