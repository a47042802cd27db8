//! Every misconfiguration names itself (issue 15): for each probe, the exact WARN line on the
//! node that can tell, on both sides where both can, and the same text in
//! `Connection::last_error()`. Loopback only; log lines are captured per test (each test runs
//! on a current-thread runtime, so every task of both nodes logs into the capture).

mod common;
#[path = "common/fake_acceptor.rs"]
mod fake_acceptor;
#[path = "common/log_lines.rs"]
mod log_lines;

use common::rawpeer::{dialing_host_for, RawPeer};
use common::{capture_logs, wait_for};
use log_lines::{conn_warn, mask_source_ports, warns};
use nodegrid::auth::Auth;
use nodegrid::wire::{ConnectResponse, GridTime, Message, Op};
use nodegrid::{GridConfig, Manager};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::Level;

const TOKEN: &str = "right-token";

/// Two listeners on loopback and their host strings, with the index of the node that dials.
async fn two() -> (Vec<TcpListener>, Vec<String>, usize) {
    let (ls, hosts) = common::listeners(2, "http").await;
    let d = usize::from(!nodegrid::wire::should_dial(&hosts[0], &hosts[1]));
    (ls, hosts, d)
}

fn serve(m: &Manager, l: TcpListener) {
    let m = m.clone();
    tokio::spawn(async move { m.serve(l).await });
}

fn node(local: &str, hosts: &[String], auth: Auth, cfg: GridConfig) -> Manager {
    Manager::builder(local.to_string(), hosts.to_vec())
        .auth(auth)
        .config(cfg)
        .build()
        .unwrap()
}

/// Probe: the dialer's token is not the acceptor's (check A). The acceptor names the source,
/// the claimed host, the token's kind and the check; the dialer names the peer and the reason
/// the acceptor sent, with the clock difference it measured. One WARN each, also when the
/// dialer retries.
#[tokio::test]
async fn probe_credentials_rejected_at_the_upgrade() {
    for jwt in [false, true] {
        let (_g, logs) = capture_logs(Level::WARN);
        let (ls, hosts, d) = two().await;
        let a = 1 - d;
        let mut nodes = Vec::new();
        for (i, l) in ls.into_iter().enumerate() {
            let auth = match (jwt, i == d) {
                (false, true) => Auth::shared_token("wrong-token"),
                (false, false) => Auth::shared_token(TOKEN),
                (true, true) => Auth::minio_jwt("minioadmin", "wrong-secret"),
                (true, false) => Auth::minio_jwt("minioadmin", "right-secret"),
            };
            let m = node(&hosts[i], &hosts, auth, GridConfig::default());
            serve(&m, l);
            nodes.push(m);
        }
        let dc = nodes[d].connection(&hosts[a]).unwrap();
        let ac = nodes[a].connection(&hosts[d]).unwrap();
        // Two attempts at least: the second is not logged again.
        wait_for("two refused attempts", Duration::from_secs(10), || {
            dc.stats().handshake_failures >= 2 && ac.last_error().is_some()
        })
        .await;
        let dialer = format!(
            "{} refused our credentials (HTTP 403: invalid token; its clock is within 2s of \
             ours): check the token or keys and the clocks",
            hosts[a]
        );
        let (kind, fix) = if jwt {
            (
                "a JWT",
                "check that every node has the same access key and secret key",
            )
        } else {
            ("a plain token", "check that every node has the same token")
        };
        let acceptor = format!(
            "refused a grid connection from 127.0.0.1:PORT (claims to be {}) at the HTTP \
             upgrade: invalid token ({kind}); {fix}",
            hosts[d]
        );
        assert_eq!(dc.last_error().as_deref(), Some(dialer.as_str()));
        assert_eq!(
            ac.last_error().map(|e| mask_source_ports(&e)).as_deref(),
            Some(acceptor.as_str())
        );
        assert_eq!(
            warns(&logs, &[&format!("{} refused our credentials", hosts[a])]),
            [conn_warn(&dialer, &hosts[d], &hosts[a])]
        );
        assert_eq!(
            warns(&logs, &[&format!("(claims to be {})", hosts[d])]),
            [conn_warn(&acceptor, &hosts[a], &hosts[d])]
        );
        assert!(!dc.state().is_connected());
        for n in &nodes {
            n.shutdown();
        }
    }
}

/// Sends an upgrade request with the given headers to `addr`; returns the status line and the
/// body of the answer.
async fn raw_upgrade(addr: &str, extra_headers: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET /minio/grid/v1 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra_headers}\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The answer is kept alive: read its head, then as many bytes as it announces.
    let mut buf = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.parse().unwrap());
            if body.len() >= len {
                return (head.lines().next().unwrap().to_string(), body.to_string());
            }
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before the whole answer: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Probe: the checks of the upgrade request other than the token: the clock (with the measured
/// skew) and a missing token from a client that is not a nodegrid peer. The 403's body says
/// which check failed, for a nodegrid dialer to show.
#[tokio::test]
async fn probe_clock_skew_and_missing_token_at_the_upgrade() {
    let (_g, logs) = capture_logs(Level::WARN);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let me = format!("http://{addr}");
    let peer = dialing_host_for(&me, &[]);
    let hosts = vec![me.clone(), peer.clone()];
    let m = node(
        &me,
        &hosts,
        Auth::shared_token(TOKEN),
        GridConfig::default(),
    );
    serve(&m, l);

    let behind = GridTime::now().unix_nanos() - 960 * 1_000_000_000;
    let (status, body) = raw_upgrade(
        &addr,
        &format!(
            "Authorization: Bearer {TOKEN}\r\nX-Minio-Time: {behind}\r\nX-Nodegrid-Host: {peer}\r\n"
        ),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert_eq!(body, "clock skew of 16m0s (at most 15m0s allowed)");
    let skew = format!(
        "refused a grid connection from 127.0.0.1:PORT (claims to be {peer}) at the HTTP \
         upgrade: clock skew: its clock is 16m0s behind ours (at most 15m0s allowed); \
         synchronise the clocks of the nodes (NTP)"
    );
    assert_eq!(
        warns(&logs, &["clock skew", &format!("(claims to be {peer})")]),
        [conn_warn(&skew, &me, &peer)]
    );
    let pc = m.connection(&peer).unwrap();
    assert_eq!(
        pc.last_error().map(|e| mask_source_ports(&e)).as_deref(),
        Some(skew.as_str())
    );

    // Not a nodegrid peer, no token: logged on no connection.
    let now = GridTime::now().unix_nanos();
    let (status, body) = raw_upgrade(&addr, &format!("X-Minio-Time: {now}\r\n")).await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert_eq!(body, "missing token");
    assert_eq!(
        warns(&logs, &["not a nodegrid peer", &format!("local={me} ")]),
        [format!(
            " WARN nodegrid::api::acceptor: refused a grid connection from 127.0.0.1:PORT (not \
             a nodegrid peer) at the HTTP upgrade: missing token (no Authorization: Bearer \
             header); check that it is a grid node with credentials local={me} suppressed=0"
        )]
    );
    m.shutdown();
}

/// Probe: the token or the clock refused in the Connect message (check B), seen from the
/// acceptor (a raw dialer passes the upgrade, then sends a Connect it refuses) and from the
/// dialer (a scripted acceptor rejects with the reference's texts).
#[tokio::test]
async fn probe_credentials_rejected_in_the_grid_handshake() {
    let (_g, logs) = capture_logs(Level::WARN);
    // The acceptor's side.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let me = format!("http://{addr}");
    let p1 = dialing_host_for(&me, &[]);
    let p2 = dialing_host_for(&me, std::slice::from_ref(&p1));
    let hosts = vec![me.clone(), p1.clone(), p2.clone()];
    let m = node(
        &me,
        &hosts,
        Auth::shared_token(TOKEN),
        GridConfig::default(),
    );
    serve(&m, l);
    let (mut p, code) = RawPeer::upgrade(
        TcpStream::connect(&addr).await.unwrap(),
        &addr,
        "/minio/grid/v1",
        TOKEN,
    )
    .await;
    assert_eq!(code, 101);
    let r = p.handshake(&p1, "wrong-token", GridTime::now()).await;
    assert_eq!(
        r.rejected_reason,
        "auth token: Authentication failed, check your access credentials"
    );
    let (mut p, _) = RawPeer::upgrade(
        TcpStream::connect(&addr).await.unwrap(),
        &addr,
        "/minio/grid/v1",
        TOKEN,
    )
    .await;
    let behind = GridTime::from_unix_nanos(GridTime::now().unix_nanos() - 360 * 1_000_000_000);
    let r = p.handshake(&p2, TOKEN, behind).await;
    assert!(r
        .rejected_reason
        .starts_with("time difference too large between servers: 6m0"));
    let token = format!(
        "refused a grid connection from 127.0.0.1:PORT (claims to be {p1}) in the grid \
         handshake: invalid token (a plain token); check that every node has the same token"
    );
    let clock = format!(
        "refused a grid connection from 127.0.0.1:PORT (claims to be {p2}) in the grid \
         handshake: clock skew: its clock is 6m0s behind ours (at most 5m0s allowed); \
         synchronise the clocks of the nodes (NTP)"
    );
    assert_eq!(
        [&p1, &p2]
            .iter()
            .flat_map(|p| warns(
                &logs,
                &[&format!("(claims to be {p}) in the grid handshake")]
            ))
            .collect::<Vec<_>>(),
        [conn_warn(&token, &me, &p1), conn_warn(&clock, &me, &p2)]
    );
    for (h, want) in [(&p1, &token), (&p2, &clock)] {
        let e = m.connection(h).unwrap().last_error();
        assert_eq!(
            e.map(|e| mask_source_ports(&e)).as_deref(),
            Some(want.as_str())
        );
    }
    m.shutdown();

    // The dialer's side: one node dials two scripted acceptors.
    let f1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let f2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fh1 = format!("http://{}", f1.local_addr().unwrap());
    let fh2 = format!("http://{}", f2.local_addr().unwrap());
    let dialer = (20000..30000)
        .map(|p| format!("http://127.0.0.4:{p}"))
        .find(|h| nodegrid::wire::should_dial(h, &fh1) && nodegrid::wire::should_dial(h, &fh2))
        .unwrap();
    let hosts = vec![dialer.clone(), fh1.clone(), fh2.clone()];
    let d = node(
        &dialer,
        &hosts,
        Auth::shared_token(TOKEN),
        GridConfig::default(),
    );
    let reasons = [
        "auth token: Authentication failed, check your access credentials",
        "time difference too large between servers: 6m0.5s",
    ];
    for (f, reason) in [(&f1, reasons[0]), (&f2, reasons[1])] {
        let mut up = fake_acceptor::accept_upgrade(f).await;
        let mut r = Message::new(Op::ConnectResponse, 0);
        r.payload = ConnectResponse {
            id: [3; 16],
            accepted: false,
            rejected_reason: reason.into(),
        }
        .encode();
        fake_acceptor::write_frame(&mut up.io, &r.to_bytes().unwrap()).await;
    }
    let c1 = d.connection(&fh1).unwrap();
    let c2 = d.connection(&fh2).unwrap();
    wait_for("both rejections", Duration::from_secs(10), || {
        c1.last_error().is_some() && c2.last_error().is_some()
    })
    .await;
    for (c, h, reason) in [(&c1, &fh1, reasons[0]), (&c2, &fh2, reasons[1])] {
        let text = format!(
            "{h} refused our credentials (grid handshake: {reason}): check the token or keys and \
             the clocks"
        );
        assert_eq!(c.last_error().as_deref(), Some(text.as_str()));
        assert_eq!(warns(&logs, &[&text]), [conn_warn(&text, &dialer, h)]);
    }
    d.shutdown();
}

/// Two listeners whose host strings satisfy `want(a, b, a_spelled_as_localhost)`.
async fn pair_where(want: impl Fn(&str, &str, &str) -> bool) -> (Vec<TcpListener>, [String; 3]) {
    for _ in 0..500 {
        let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pa = la.local_addr().unwrap().port();
        let a = format!("http://127.0.0.1:{pa}");
        let a2 = format!("http://localhost:{pa}");
        let b = format!("http://{}", lb.local_addr().unwrap());
        if want(&a, &b, &a2) {
            return (vec![la, lb], [a, b, a2]);
        }
    }
    panic!("no port pair found");
}

/// Probe: node B spells node A `localhost` where A calls itself `127.0.0.1`, and the dial rule
/// has B dial A (so they connect). Both say how the lists differ and still connect; with
/// `strict_host_list` on the acceptor, A refuses and both say so.
#[tokio::test]
async fn probe_host_lists_spelled_differently() {
    for strict in [false, true] {
        let (_g, logs) = capture_logs(Level::WARN);
        let (ls, [a, b, a2]) = pair_where(|a, b, a2| {
            !nodegrid::wire::should_dial(a, b) && nodegrid::wire::should_dial(b, a2)
        })
        .await;
        let mut cfg = GridConfig::default();
        cfg.strict_host_list = strict;
        let na = node(&a, &[a.clone(), b.clone()], Auth::shared_token(TOKEN), cfg);
        let nb = node(
            &b,
            &[a2.clone(), b.clone()],
            Auth::shared_token(TOKEN),
            GridConfig::default(),
        );
        let mut ls = ls.into_iter();
        serve(&na, ls.next().unwrap());
        serve(&nb, ls.next().unwrap());
        let ac = na.connection(&b).unwrap();
        let bc = nb.connection(&a2).unwrap();
        wait_for("both report the lists", Duration::from_secs(10), || {
            ac.last_error().is_some() && bc.last_error().is_some()
        })
        .await;
        let (end_a, end_b) = if strict {
            (
                "connection refused: strict_host_list".to_string(),
                format!("connection refused by {a2}: strict_host_list"),
            )
        } else {
            (
                "connected anyway".to_string(),
                "connected anyway".to_string(),
            )
        };
        let text_a = format!(
            "host lists differ between this node and {b}: {b} lists 2 hosts, this node 2; it \
             does not know {a} (this node); 1 of its hosts is not in our list; make the host \
             lists identical on every node ({end_a})"
        );
        let text_b = format!(
            "host lists differ between this node and {a2}: {a2} lists 2 hosts, this node 2; it \
             does not know {a2} (itself); 1 of its hosts is not in our list; make the host lists \
             identical on every node ({end_b})"
        );
        assert_eq!(ac.last_error().as_deref(), Some(text_a.as_str()));
        assert_eq!(bc.last_error().as_deref(), Some(text_b.as_str()));
        assert_eq!(
            warns(&logs, &["host lists differ", &format!("local={a} ")])
                .into_iter()
                .chain(warns(&logs, &["host lists differ", &format!("local={b} ")]))
                .collect::<Vec<_>>(),
            [conn_warn(&text_a, &a, &b), conn_warn(&text_b, &b, &a2)]
        );
        assert_eq!(ac.state().is_connected(), !strict);
        assert_eq!(bc.state().is_connected(), !strict);
        na.shutdown();
        nb.shutdown();
    }
}

/// Probe: one node's list lacks a host the other lists. Both say which and how many.
#[tokio::test]
async fn probe_host_list_missing_a_host() {
    let (_g, logs) = capture_logs(Level::WARN);
    let (ls, hosts, _) = two().await;
    let (a, b) = (&hosts[0], &hosts[1]);
    let c = "http://127.0.0.1:1".to_string();
    let na = node(
        a,
        &[a.clone(), b.clone(), c.clone()],
        Auth::shared_token(TOKEN),
        GridConfig::default(),
    );
    let nb = node(
        b,
        &[a.clone(), b.clone()],
        Auth::shared_token(TOKEN),
        GridConfig::default(),
    );
    let mut ls = ls.into_iter();
    serve(&na, ls.next().unwrap());
    serve(&nb, ls.next().unwrap());
    let ac = na.connection(b).unwrap();
    let bc = nb.connection(a).unwrap();
    let text_a = format!(
        "host lists differ between this node and {b}: {b} lists 2 hosts, this node 3; it does \
         not know {c}; make the host lists identical on every node (connected anyway)"
    );
    let text_b = format!(
        "host lists differ between this node and {a}: {a} lists 3 hosts, this node 2; 1 of its \
         hosts is not in our list; make the host lists identical on every node (connected \
         anyway)"
    );
    wait_for("both report the lists", Duration::from_secs(10), || {
        ac.last_error().as_deref() == Some(&text_a) && bc.last_error().as_deref() == Some(&text_b)
    })
    .await;
    assert!(ac.state().is_connected() && bc.state().is_connected());
    let mut got = warns(&logs, &["host lists differ", &format!("local={a} ")]);
    got.extend(warns(&logs, &["host lists differ", &format!("local={b} ")]));
    got.sort();
    let mut want = [conn_warn(&text_a, a, b), conn_warn(&text_b, b, a)];
    want.sort();
    assert_eq!(got, want);
    na.shutdown();
    nb.shutdown();
}

/// Probe: B spells A `localhost`, and by the dial rule each dials the other. A's Connect names
/// a host B does not know; B's Connect reaches a node that should dial it. Each side of each
/// refusal says what to check.
#[tokio::test]
async fn probe_unknown_host_and_dial_rule() {
    let (_g, logs) = capture_logs(Level::WARN);
    let (ls, [a, b, a2]) = pair_where(|a, b, a2| {
        nodegrid::wire::should_dial(a, b) && nodegrid::wire::should_dial(b, a2)
    })
    .await;
    let na = node(
        &a,
        &[a.clone(), b.clone()],
        Auth::shared_token(TOKEN),
        GridConfig::default(),
    );
    let nb = node(
        &b,
        &[a2.clone(), b.clone()],
        Auth::shared_token(TOKEN),
        GridConfig::default(),
    );
    let mut ls = ls.into_iter();
    serve(&na, ls.next().unwrap());
    serve(&nb, ls.next().unwrap());
    let unknown_dialer = format!(
        "{b} does not know us as {a} (rejected: unknown incoming host: {a}); check that its host \
         list contains {a} exactly"
    );
    let unknown_acceptor = format!(
        " WARN nodegrid::api::acceptor: refused a grid connection from 127.0.0.1:PORT (claims to \
         be {a}): {a} is not in our host list (it lists {a2} with the same port); check that our \
         host list contains it exactly local={b} suppressed=0"
    );
    let side_acceptor = format!(
        "refused a grid connection from 127.0.0.1:PORT (claims to be {b}): by the dial rule \
         this node dials {b}, not the other way round, so its host list spells this node \
         differently; check that it contains {a} exactly"
    );
    let side_dialer = format!(
        "{a2} says it dials us, not the other way round (rejected: grid: expected to be client \
         side, not server side): it names itself differently than our host list does; check \
         that its own host string is {a2} exactly"
    );
    wait_for("all four lines", Duration::from_secs(10), || {
        warns(&logs, &["is not in our host list", &format!("local={b} ")]).len() == 1
            && warns(&logs, &["by the dial rule", &format!("local={a} ")]).len() == 1
            && warns(&logs, &["does not know us", &format!("local={a} ")]).len() == 1
            && warns(&logs, &["says it dials us", &format!("local={b} ")]).len() == 1
    })
    .await;
    assert_eq!(
        warns(&logs, &["does not know us", &format!("local={a} ")]),
        [conn_warn(&unknown_dialer, &a, &b)]
    );
    assert_eq!(
        warns(&logs, &["is not in our host list", &format!("local={b} ")]),
        [unknown_acceptor]
    );
    assert_eq!(
        warns(&logs, &["by the dial rule", &format!("local={a} ")]),
        [conn_warn(&side_acceptor, &a, &b)]
    );
    assert_eq!(
        warns(&logs, &["says it dials us", &format!("local={b} ")]),
        [conn_warn(&side_dialer, &b, &a2)]
    );
    assert_eq!(nb.connection(&a2).unwrap().last_error(), Some(side_dialer));
    let ae = na
        .connection(&b)
        .unwrap()
        .last_error()
        .map(|e| mask_source_ports(&e));
    assert!(
        ae == Some(unknown_dialer) || ae == Some(side_acceptor),
        "{ae:?}"
    );
    na.shutdown();
    nb.shutdown();
}

/// Probe: a peer that should dial us (by the dial rule) has not: after 10 s one WARN, again
/// every 30 s while it does not, and the text as the last error.
#[tokio::test(start_paused = true)]
async fn probe_waiting_for_a_peer_that_dials_us() {
    let (_g, logs) = capture_logs(Level::WARN);
    let me = "http://127.0.0.1:7101".to_string();
    let peer = dialing_host_for(&me, &[]);
    let m = node(
        &me,
        &[me.clone(), peer.clone()],
        Auth::shared_token(TOKEN),
        GridConfig::default(),
    );
    let c = m.connection(&peer).unwrap();
    let text = format!(
        "waiting for {peer} to connect (it dials this node); check that it is running and that \
         its host list contains {me} exactly"
    );
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    let waiting = || {
        warns(
            &logs,
            &[&format!("waiting for {peer} "), &format!("local={me} ")],
        )
    };
    assert!(waiting().is_empty());
    assert_eq!(c.last_error(), None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(waiting(), [conn_warn(&text, &me, &peer)]);
    assert_eq!(c.last_error().as_deref(), Some(text.as_str()));
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(waiting().len(), 1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(waiting().len(), 2);
    m.shutdown();
}
