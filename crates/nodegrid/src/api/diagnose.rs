//! What a connection says when a node is misconfigured (issue 15): one text per problem, naming
//! the peer, what is wrong and what to check. The same text goes to the WARN line (at most one
//! per peer and kind of problem per 30 s) and to `Connection::last_error`. The README's
//! troubleshooting table lists them; keep the two in step.
//!
//! Pure functions of what each side knows; the dialer's loop (`reconnect.rs`) and the acceptor
//! (`acceptor.rs`) pick the text and hand it to the connection.

use crate::transport::diagnose::{clock_words, tls_problem, AuthFailure, TlsSide};
use crate::transport::upgrade::DialError;
use crate::transport::Target;
use crate::wire::NodegridExt;
use std::net::SocketAddr;
use std::time::Duration;

/// The kinds of problem a connection reports. Each kind is logged at WARN at most once per
/// peer per 30 s, so a new kind of problem shows at once while a repeated one does not flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Problem {
    /// The peer cannot be reached: TCP refused, timed out, unexpected HTTP answers.
    Unreachable,
    /// A token or a clock was refused (check A or B of PROTOCOL.md §2.4).
    Credentials,
    /// A TLS handshake failed, or a certificate does not fit the claimed host.
    Tls,
    /// The two nodes' host lists differ.
    HostList,
    /// A node does not know the host string the other claims.
    UnknownHost,
    /// The two nodes disagree on who dials (a host string spelled differently).
    WrongSide,
    /// A peer that dials us has not done so.
    Waiting,
    /// Any other refusal or failed handshake.
    Rejected,
}

/// The texts MinIO and nodegrid acceptors reject a Connect with (PROTOCOL.md §4.2), as far as
/// a diagnosis depends on them.
const AUTH_TOKEN: &str = "auth token: ";
const CLOCK_SKEW: &str = "time difference too large between servers: ";
const UNKNOWN_HOST: &str = "unknown incoming host: ";
const WRONG_SIDE: &str = "grid: expected to be client side, not server side";
/// The start of the reason a nodegrid acceptor with `strict_host_list` refuses with.
pub(crate) const HOST_LISTS_DIFFER: &str = "host lists differ";

/// What a Connect rejection reason says, for the texts of both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The token (`auth token: …`) or the clock (`time difference too large …`).
    Credentials,
    /// `unknown incoming host: <host>`.
    UnknownHost,
    /// `grid: expected to be client side, not server side`.
    WrongSide,
    /// A nodegrid acceptor's `strict_host_list` refusal.
    HostLists,
    /// Anything else.
    Other,
}

impl Rejection {
    /// Whether a credentials rejection is about the clock rather than the token.
    pub(crate) fn is_clock(reason: &str) -> bool {
        reason.starts_with(CLOCK_SKEW)
    }

    pub(crate) fn of(reason: &str) -> Rejection {
        if reason.starts_with(AUTH_TOKEN) || reason.starts_with(CLOCK_SKEW) {
            Rejection::Credentials
        } else if reason.starts_with(UNKNOWN_HOST) {
            Rejection::UnknownHost
        } else if reason == WRONG_SIDE {
            Rejection::WrongSide
        } else if reason.starts_with(HOST_LISTS_DIFFER) {
            Rejection::HostLists
        } else {
            Rejection::Other
        }
    }
}

/// Where the acceptor refused a connection for its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Check A, on the HTTP upgrade request.
    Upgrade,
    /// Check B, on the Connect message.
    Connect,
}

fn from(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "an unknown address".to_string(), |a| a.to_string())
}

/// The acceptor's line for a connection refused for its credentials.
pub(crate) fn refused_credentials_incoming(
    addr: Option<SocketAddr>,
    claimed: Option<&str>,
    stage: Stage,
    f: &AuthFailure,
) -> String {
    let claim = claimed.map_or_else(
        || "not a nodegrid peer".to_string(),
        |h| format!("claims to be {h}"),
    );
    let stage = match stage {
        Stage::Upgrade => "at the HTTP upgrade",
        Stage::Connect => "in the grid handshake",
    };
    format!(
        "refused a grid connection from {} ({claim}) {stage}: {}; {}",
        from(addr),
        f.check,
        f.fix
    )
}

/// The dialer's line when the acceptor answered its upgrade with 403: `reason` is the body of
/// a nodegrid acceptor's answer, `clock_nanos` our clock minus the acceptor's `Date`.
pub(crate) fn refused_credentials_http(
    peer: &str,
    reason: Option<&str>,
    clock_nanos: Option<i128>,
) -> String {
    let mut why = "HTTP 403".to_string();
    if let Some(r) = reason {
        why.push_str(": ");
        why.push_str(r);
    }
    if let Some(c) = clock_nanos {
        why.push_str("; ");
        why.push_str(&clock_words(c, Duration::from_secs(2)));
    }
    format!("{peer} refused our credentials ({why}): check the token or keys and the clocks")
}

/// The dialer's line when the acceptor rejected its Connect for the token or the clock.
pub(crate) fn refused_credentials_connect(peer: &str, reason: &str) -> String {
    format!(
        "{peer} refused our credentials (grid handshake: {reason}): check the token or keys and \
         the clocks"
    )
}

/// The acceptor's line for a Connect that claims a host it does not know.
pub(crate) fn unknown_incoming_host(
    addr: Option<SocketAddr>,
    claimed: &str,
    hosts: &[String],
) -> String {
    let hint = similar_host(claimed, hosts)
        .map(|h| format!(" (it lists {h} with the same port)"))
        .unwrap_or_default();
    format!(
        "refused a grid connection from {} (claims to be {claimed}): {claimed} is not in our \
         host list{hint}; check that our host list contains it exactly",
        from(addr)
    )
}

/// The one host of `hosts` with the same scheme and port as `claimed` but another spelling, if
/// exactly one has.
fn similar_host<'h>(claimed: &str, hosts: &'h [String]) -> Option<&'h str> {
    let c = Target::parse(claimed)?;
    let port = |t: &Target| t.authority.rsplit(':').next().map(str::to_string);
    let mut same = hosts.iter().filter(|h| {
        Target::parse(h).is_some_and(|t| t.tls == c.tls && port(&t) == port(&c) && **h != claimed)
    });
    match (same.next(), same.next()) {
        (Some(h), None) => Some(h),
        _ => None,
    }
}

/// The dialer's line when the acceptor does not know our host string (with the reason it
/// sent, as MinIO words it).
pub(crate) fn peer_does_not_know_us(peer: &str, local: &str) -> String {
    format!(
        "{peer} does not know us as {local} (rejected: {UNKNOWN_HOST}{local}); check that its \
         host list contains {local} exactly"
    )
}

/// The acceptor's line when a peer dials it that, by the dial rule, it should dial.
pub(crate) fn wrong_side_incoming(addr: Option<SocketAddr>, claimed: &str, local: &str) -> String {
    format!(
        "refused a grid connection from {} (claims to be {claimed}): by the dial rule this node \
         dials {claimed}, not the other way round, so its host list spells this node \
         differently; check that it contains {local} exactly",
        from(addr)
    )
}

/// The dialer's line when the acceptor says it should dial us.
pub(crate) fn wrong_side_dialer(peer: &str) -> String {
    format!(
        "{peer} says it dials us, not the other way round (rejected: {WRONG_SIDE}): it names \
         itself differently than our host list does; check that its own host string is {peer} \
         exactly"
    )
}

/// What differs between our host list (`ours`) and the one `theirs` describes.
pub(crate) fn host_list_details(
    peer: &str,
    local: &str,
    ours: &[String],
    theirs: &NodegridExt,
) -> String {
    let mut ours_distinct: Vec<&str> = ours.iter().map(String::as_str).collect();
    ours_distinct.sort_unstable();
    ours_distinct.dedup();
    let mut s = if theirs.host_ids.is_empty() {
        format!("{peer} lists other hosts than this node")
    } else {
        format!(
            "{peer} lists {} hosts, this node {}",
            theirs.host_ids.len(),
            ours_distinct.len()
        )
    };
    let missing = theirs.missing_from_peer(ours);
    if !missing.is_empty() {
        const SHOWN: usize = 5;
        let mut names: Vec<String> = missing
            .iter()
            .take(SHOWN)
            .map(|h| {
                if *h == local {
                    format!("{h} (this node)")
                } else if *h == peer {
                    format!("{h} (itself)")
                } else {
                    h.to_string()
                }
            })
            .collect();
        if missing.len() > SHOWN {
            names.push(format!("and {} more", missing.len() - SHOWN));
        }
        s.push_str("; it does not know ");
        s.push_str(&names.join(", "));
    }
    match theirs.unknown_to_us(ours) {
        0 => {}
        1 => s.push_str("; 1 of its hosts is not in our list"),
        n => s.push_str(&format!("; {n} of its hosts are not in our list")),
    }
    s
}

/// How a host-list mismatch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Connected all the same (`strict_host_list` off on both sides).
    Connected,
    /// This node refused (its `strict_host_list`).
    RefusedHere,
    /// The peer refused (its `strict_host_list`).
    RefusedThere,
}

/// The line for host lists that differ; `details` from [`host_list_details`].
pub(crate) fn host_lists_differ(peer: &str, details: &str, outcome: Outcome) -> String {
    let end = match outcome {
        Outcome::Connected => "connected anyway".to_string(),
        Outcome::RefusedHere => "connection refused: strict_host_list".to_string(),
        Outcome::RefusedThere => format!("connection refused by {peer}: strict_host_list"),
    };
    format!(
        "host lists differ between this node and {peer}: {details}; make the host lists \
         identical on every node ({end})"
    )
}

/// The reason a strict acceptor sends (nodegrid dialers only: MinIO sends no host list).
pub(crate) fn strict_refusal_reason(local: &str) -> String {
    format!("{HOST_LISTS_DIFFER} and strict_host_list is set on {local}")
}

/// The accepting side's line when a peer that dials us has not connected.
pub(crate) fn waiting_for(peer: &str, local: &str) -> String {
    format!(
        "waiting for {peer} to connect (it dials this node); check that it is running and that \
         its host list contains {local} exactly"
    )
}

/// What the dialer's side knows about a failed attempt.
pub(crate) struct DialContext<'a> {
    pub peer: &'a str,
    pub local: &'a str,
    pub hosts: &'a [String],
    pub target: &'a Target,
    pub route: &'a str,
    /// The acceptor's extension fields, when its answer carried them.
    pub peer_ext: Option<&'a NodegridExt>,
}

/// The dialer's kind and text for a failed attempt.
pub(crate) fn dial_failure(cx: &DialContext<'_>, e: &DialError) -> (Problem, String) {
    let peer = cx.peer;
    let tls_side = TlsSide::Dialer {
        server_name: &cx.target.hostname,
    };
    match e {
        DialError::HttpStatus {
            status: 403,
            reason,
            clock_nanos,
        } => (
            Problem::Credentials,
            refused_credentials_http(peer, reason.as_deref(), *clock_nanos),
        ),
        DialError::HttpStatus { status: 404, .. } => (
            Problem::Unreachable,
            format!(
                "{peer} has no grid endpoint at {} (HTTP 404); check that it is a grid node and \
                 that both nodes use the same route",
                cx.route
            ),
        ),
        DialError::Io(io) => match tls_problem(io, tls_side) {
            Some(p) => (
                Problem::Tls,
                format!("TLS handshake with {peer} failed: {}; {}", p.what, p.fix),
            ),
            // With mutual TLS a peer that refuses our certificate may reset the connection
            // before its alert arrives.
            None if cx.target.tls
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::UnexpectedEof
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                (
                    Problem::Tls,
                    format!(
                        "{peer} closed the connection during the TLS handshake or upgrade \
                         ({io}); check its log: with mutual TLS it may not trust our certificate"
                    ),
                )
            }
            None => (
                Problem::Unreachable,
                format!(
                    "cannot reach {peer} at {}: {io}; check that it is running and listening \
                     there",
                    cx.target.authority
                ),
            ),
        },
        DialError::Timeout(d) => (
            Problem::Unreachable,
            format!(
                "{peer} did not answer within {d:?} (connect, TLS and upgrade); check that it is \
                 running and reachable at {}",
                cx.target.authority
            ),
        ),
        DialError::Rejected(reason) => match Rejection::of(reason) {
            Rejection::Credentials => (
                Problem::Credentials,
                refused_credentials_connect(peer, reason),
            ),
            Rejection::UnknownHost => (Problem::UnknownHost, peer_does_not_know_us(peer, cx.local)),
            Rejection::WrongSide => (Problem::WrongSide, wrong_side_dialer(peer)),
            Rejection::HostLists => {
                let details = match cx.peer_ext {
                    Some(x) => host_list_details(peer, cx.local, cx.hosts, x),
                    None => reason.clone(),
                };
                (
                    Problem::HostList,
                    host_lists_differ(peer, &details, Outcome::RefusedThere),
                )
            }
            Rejection::Other => (Problem::Rejected, e.to_string()),
        },
        DialError::HostList(text) => (Problem::HostList, text.clone()),
        DialError::BadUpgrade(_) if cx.target.tls => (
            Problem::Unreachable,
            format!(
                "{peer} closed the connection during the upgrade ({e}); check its log: with \
                 mutual TLS it may not trust our certificate"
            ),
        ),
        other => (
            Problem::Rejected,
            format!("handshake with {peer} failed: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "http://127.0.0.1:7101";
    const B: &str = "http://127.0.0.1:7102";
    const A2: &str = "http://localhost:7101";

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rejection_reasons_are_recognised() {
        use Rejection::*;
        for (r, want) in [
            (
                "auth token: Authentication failed, check your access credentials",
                Credentials,
            ),
            (
                "time difference too large between servers: 6m0.5s",
                Credentials,
            ),
            ("unknown incoming host: http://x:1", UnknownHost),
            (
                "grid: expected to be client side, not server side",
                WrongSide,
            ),
            (
                "host lists differ and strict_host_list is set on http://a:1",
                HostLists,
            ),
            ("error parsing connectReq: x", Other),
        ] {
            assert_eq!(Rejection::of(r), want, "{r}");
        }
    }

    #[test]
    fn host_list_texts() {
        // B spells A as localhost: A's view of B's list, and B's view of A's.
        let a_list = hosts(&[A, B]);
        let b_list = hosts(&[A2, B]);
        let b_ext = NodegridExt::new(&b_list, 1 << 20);
        let a_ext = NodegridExt::new(&a_list, 1 << 20);
        assert!(!b_ext.same_hosts(&a_list) && b_ext.same_hosts(&hosts(&[B, A2])));
        assert_eq!(
            host_list_details(B, A, &a_list, &b_ext),
            format!(
                "{B} lists 2 hosts, this node 2; it does not know {A} (this node); 1 of its \
                 hosts is not in our list"
            )
        );
        assert_eq!(
            host_list_details(A2, B, &b_list, &a_ext),
            format!(
                "{A2} lists 2 hosts, this node 2; it does not know {A2} (itself); 1 of its \
                 hosts is not in our list"
            )
        );
        // A list that lacks a host: counts and the missing one.
        let short = NodegridExt::new(&hosts(&[A, B]), 1);
        let c = "http://127.0.0.1:7103";
        assert_eq!(
            host_list_details(B, A, &hosts(&[A, B, c]), &short),
            format!("{B} lists 2 hosts, this node 3; it does not know {c}")
        );
        assert_eq!(
            host_lists_differ(B, "d", Outcome::Connected),
            format!(
                "host lists differ between this node and {B}: d; make the host lists identical \
                 on every node (connected anyway)"
            )
        );
        assert_eq!(
            host_lists_differ(B, "d", Outcome::RefusedThere),
            format!(
                "host lists differ between this node and {B}: d; make the host lists identical \
                 on every node (connection refused by {B}: strict_host_list)"
            )
        );
    }

    #[test]
    fn identity_texts() {
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        assert_eq!(
            unknown_incoming_host(Some(addr), A2, &hosts(&[A, B])),
            format!(
                "refused a grid connection from 127.0.0.1:40000 (claims to be {A2}): {A2} is not \
                 in our host list (it lists {A} with the same port); check that our host list \
                 contains it exactly"
            )
        );
        assert_eq!(
            unknown_incoming_host(None, "http://x:1", &hosts(&[A, B])),
            "refused a grid connection from an unknown address (claims to be http://x:1): \
             http://x:1 is not in our host list; check that our host list contains it exactly"
        );
        assert_eq!(
            peer_does_not_know_us(B, A),
            format!(
                "{B} does not know us as {A} (rejected: unknown incoming host: {A}); check that \
                 its host list contains {A} exactly"
            )
        );
    }

    #[test]
    fn credential_texts() {
        assert_eq!(
            refused_credentials_http(B, Some("invalid token"), Some(0)),
            format!(
                "{B} refused our credentials (HTTP 403: invalid token; its clock is within 2s of \
                 ours): check the token or keys and the clocks"
            )
        );
        assert_eq!(
            refused_credentials_http(B, None, Some(-960_000_000_000)),
            format!(
                "{B} refused our credentials (HTTP 403; its clock is 16m0s ahead of ours): \
                 check the token or keys and the clocks"
            )
        );
        assert_eq!(
            refused_credentials_http(B, None, None),
            format!(
                "{B} refused our credentials (HTTP 403): check the token or keys and the clocks"
            )
        );
    }
}
