//! Words for what goes wrong before a session exists (issue 15): why a token or clock was
//! refused, which certificate problem a TLS handshake met, and how far two clocks are apart;
//! and [`WarnLimiter`], which keeps each of these warnings to one per peer (or source address)
//! per interval. Pure functions, unit-tested here; the callers decide where a text goes.

use crate::auth::AuthError;
use parking_lot::Mutex;
use rustls::{AlertDescription, CertificateError};
use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The header a nodegrid dialer adds to its upgrade request: its own host string, so an
/// acceptor that refuses the request can say who claimed to call (PROTOCOL.md §2.2). MinIO
/// ignores it.
pub(crate) const NODEGRID_HOST_HEADER: &str = "X-Nodegrid-Host";
/// Longest claimed host string an acceptor repeats in its logs.
pub(crate) const MAX_CLAIMED_HOST: usize = 256;
/// How often one warning (per peer, per source address) is logged.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(30);

/// Decides whether a warning about `K` is due: at most one per key per interval. Keeps at most
/// `cap` keys; when full of recent keys, new keys are not warned about (their events still
/// reach DEBUG), so a flood from many addresses cannot grow it.
pub(crate) struct WarnLimiter<K> {
    interval: Duration,
    cap: usize,
    seen: Mutex<HashMap<K, (Instant, u64)>>,
}

impl<K: Hash + Eq> WarnLimiter<K> {
    pub(crate) fn new(interval: Duration, cap: usize) -> Self {
        WarnLimiter {
            interval,
            cap,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when a warning about `key` may be logged now, `n` being how many were held
    /// back since the last one; `None` when one was logged less than an interval ago.
    pub(crate) fn due(&self, key: K) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock();
        if let Some((at, held)) = seen.get_mut(&key) {
            if now.duration_since(*at) < self.interval {
                *held += 1;
                return None;
            }
            let n = *held;
            *at = now;
            *held = 0;
            return Some(n);
        }
        if seen.len() >= self.cap {
            let interval = self.interval;
            seen.retain(|_, (at, _)| now.duration_since(*at) < interval);
            if seen.len() >= self.cap {
                return None;
            }
        }
        seen.insert(key, (now, 0));
        Some(0)
    }
}

/// What a token looks like, for logs that must never show it: `a JWT` (three base64url parts
/// separated by dots), `a plain token`, or `no token`.
pub(crate) fn token_kind(token: Option<&str>) -> &'static str {
    let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return "no token";
    };
    let b64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = t.split('.').collect();
    if parts.len() == 3 && parts.iter().all(|p| b64url(p)) {
        "a JWT"
    } else {
        "a plain token"
    }
}

/// A duration for people: whole seconds from one second up, milliseconds below (Go's format,
/// as the protocol's own texts use).
pub(crate) fn duration_words(nanos: u128) -> String {
    let rounded = if nanos >= 1_000_000_000 {
        (nanos + 500_000_000) / 1_000_000_000 * 1_000_000_000
    } else {
        (nanos + 500_000) / 1_000_000 * 1_000_000
    };
    crate::wire::go_duration_string(rounded as i128)
}

/// How a peer's clock relates to ours, from `ours_minus_theirs` (ns): "its clock is 6m0s
/// behind ours", "… ahead of ours", or, below `tolerance`, "its clock is within 2s of ours".
pub(crate) fn clock_words(ours_minus_theirs: i128, tolerance: Duration) -> String {
    let abs = ours_minus_theirs.unsigned_abs();
    if abs < tolerance.as_nanos() {
        return format!(
            "its clock is within {} of ours",
            duration_words(tolerance.as_nanos())
        );
    }
    let side = if ours_minus_theirs > 0 {
        "behind"
    } else {
        "ahead of"
    };
    format!("its clock is {} {side} ours", duration_words(abs))
}

/// Why a token check failed, in words for the acceptor's log (`check`, `fix`) and for the
/// body of its HTTP 403 answer (`body`, which a nodegrid dialer shows; it names no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthFailure {
    pub check: String,
    pub body: String,
    pub fix: &'static str,
}

/// Describes a refused token check. `token` is what the peer sent (never repeated, only its
/// kind), `peer_nanos` the time it claimed (Unix ns) when known, `max` the allowed skew.
pub(crate) fn auth_failure(
    err: &AuthError,
    token: Option<&str>,
    peer_nanos: Option<i128>,
    now: SystemTime,
    max: Duration,
) -> AuthFailure {
    let kind = token_kind(token);
    let same_secret = if kind == "a JWT" {
        "check that every node has the same access key and secret key"
    } else {
        "check that every node has the same token"
    };
    match err {
        AuthError::MissingToken => AuthFailure {
            check: "missing token (no Authorization: Bearer header)".into(),
            body: "missing token".into(),
            fix: "check that it is a grid node with credentials",
        },
        AuthError::Expired => AuthFailure {
            check: format!("expired token ({kind})"),
            body: "expired token".into(),
            fix: "check that every node has the same access key and secret key",
        },
        AuthError::BadTimeHeader => AuthFailure {
            check: "missing or malformed X-Minio-Time header".into(),
            body: "missing or malformed X-Minio-Time header".into(),
            fix: "check that it is a grid node",
        },
        AuthError::ClockSkew(text) => {
            let max_text = duration_words(max.as_nanos());
            match peer_nanos {
                Some(p) => {
                    let ours = crate::wire::GridTime::from(now).unix_nanos();
                    let diff = ours - p;
                    AuthFailure {
                        check: format!(
                            "clock skew: {} (at most {max_text} allowed)",
                            clock_words(diff, Duration::from_secs(1))
                        ),
                        body: format!(
                            "clock skew of {} (at most {max_text} allowed)",
                            duration_words(diff.unsigned_abs())
                        ),
                        fix: "synchronise the clocks of the nodes (NTP)",
                    }
                }
                None => AuthFailure {
                    check: format!("clock skew of {text} (at most {max_text} allowed)"),
                    body: format!("clock skew of {text} (at most {max_text} allowed)"),
                    fix: "synchronise the clocks of the nodes (NTP)",
                },
            }
        }
        _ => AuthFailure {
            check: format!("invalid token ({kind})"),
            body: "invalid token".into(),
            fix: same_secret,
        },
    }
}

/// Which end of a TLS handshake we were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsSide<'a> {
    /// We dialed `server_name` and verified its certificate.
    Dialer { server_name: &'a str },
    /// We accepted and verified the peer's client certificate (mutual TLS).
    Acceptor,
}

/// A TLS failure in plain words: what is wrong and what to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsProblem {
    pub what: String,
    pub fix: String,
}

/// The rustls error inside an I/O error, if there is one.
pub(crate) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Describes a TLS failure seen on `side`; `None` when `e` carries no TLS error (a reset, an
/// end of file, a timeout).
pub(crate) fn tls_problem(e: &io::Error, side: TlsSide<'_>) -> Option<TlsProblem> {
    rustls_error(e).map(|r| describe_tls(r, side))
}

fn problem(what: impl Into<String>, fix: impl Into<String>) -> TlsProblem {
    TlsProblem {
        what: what.into(),
        fix: fix.into(),
    }
}

fn unix_date(t: &rustls::pki_types::UnixTime) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs()))
}

/// The words for a rustls error (see [`tls_problem`]).
pub(crate) fn describe_tls(e: &rustls::Error, side: TlsSide<'_>) -> TlsProblem {
    use rustls::Error as E;
    let (theirs, ours_ca) = match side {
        TlsSide::Dialer { .. } => ("its certificate", "our CA bundle (--tls-ca)"),
        TlsSide::Acceptor => ("its client certificate", "our CA bundle (--tls-ca)"),
    };
    let speaks = match side {
        TlsSide::Dialer { .. } => {
            "check that it serves TLS on this port: every node must spell every host with the \
             same scheme (https://)"
        }
        TlsSide::Acceptor => {
            "check that it dials with TLS: every node must spell every host with the same \
             scheme (https://)"
        }
    };
    match e {
        E::InvalidCertificate(c) => describe_certificate(c, side, theirs, ours_ca),
        E::NoCertificatesPresented => problem(
            "it presented no client certificate, and mutual TLS requires one",
            "give it a certificate signed by a CA in our CA bundle (--tls-cert, --tls-key)",
        ),
        E::AlertReceived(a) => describe_alert(*a, side),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => problem("it does not speak TLS", speaks),
        E::PeerIncompatible(p) => problem(
            format!("it has no TLS version or cipher suite in common with us ({p:?})"),
            "check the TLS settings of both nodes",
        ),
        other => problem(
            other.to_string(),
            "check the certificates and CA bundles of both nodes",
        ),
    }
}

fn describe_certificate(
    c: &CertificateError,
    side: TlsSide<'_>,
    theirs: &str,
    ours_ca: &str,
) -> TlsProblem {
    use CertificateError as C;
    match c {
        C::UnknownIssuer | C::BadSignature => problem(
            format!("{theirs} is signed by an unknown authority"),
            format!("check that {ours_ca} contains the CA that signed {theirs}"),
        ),
        C::ExpiredContext { not_after, .. } => problem(
            format!("{theirs} has expired (on {})", unix_date(not_after)),
            format!("renew {theirs}"),
        ),
        C::Expired => problem(format!("{theirs} has expired"), format!("renew {theirs}")),
        C::NotValidYetContext { not_before, .. } => problem(
            format!("{theirs} is not valid yet (from {})", unix_date(not_before)),
            "check the clocks of both nodes",
        ),
        C::NotValidYet => problem(
            format!("{theirs} is not valid yet"),
            "check the clocks of both nodes",
        ),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            let name = match side {
                TlsSide::Dialer { server_name } => server_name,
                TlsSide::Acceptor => "the host it claims",
            };
            let names = match c {
                C::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                    let shown: Vec<&str> = presented.iter().map(|p| san_text(p)).collect();
                    format!(" (it names {})", shown.join(", "))
                }
                _ => String::new(),
            };
            problem(
                format!("{theirs} is not valid for the name {name}{names}"),
                format!("give it a certificate whose subject alternative names include {name}"),
            )
        }
        C::Revoked => problem(
            format!("{theirs} has been revoked"),
            "give it a new certificate",
        ),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => problem(
            format!("{theirs} is not made for this use (extended key usage)"),
            "give it a certificate for both server and client authentication",
        ),
        other => problem(
            format!("{theirs} was refused: {other}"),
            format!("check {theirs} and {ours_ca}"),
        ),
    }
}

/// A subject alternative name as webpki reports it (`DnsName("a.example")`), without the
/// wrapper.
fn san_text(p: &str) -> &str {
    p.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .unwrap_or(p)
}

fn describe_alert(a: AlertDescription, side: TlsSide<'_>) -> TlsProblem {
    use AlertDescription as A;
    match a {
        A::UnknownCA | A::DecryptError => problem(
            "it does not trust our certificate (unknown authority)",
            "check that its CA bundle (--tls-ca) contains the CA that signed our certificate",
        ),
        A::CertificateExpired => problem(
            "it says our certificate has expired or is not valid yet",
            "renew our certificate, and check the clocks of both nodes",
        ),
        A::CertificateRequired | A::NoCertificate => problem(
            "it requires a client certificate and we sent none",
            "give this node a certificate signed by a CA it trusts (--tls-cert, --tls-key)",
        ),
        A::BadCertificate => match side {
            TlsSide::Acceptor => problem(
                "it refused our certificate (bad certificate; usually a name mismatch)",
                "check that our certificate's subject alternative names include the host name \
                 it dials us by",
            ),
            TlsSide::Dialer { .. } => problem(
                "it refused our certificate (bad certificate)",
                "check our certificate and its CA bundle (--tls-ca)",
            ),
        },
        A::CertificateRevoked => problem(
            "it says our certificate has been revoked",
            "give this node a new certificate",
        ),
        other => problem(
            format!("it ended the TLS handshake (alert: {other:?})"),
            "check the certificates and CA bundles of both nodes",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_kinds_never_show_the_token() {
        assert_eq!(token_kind(None), "no token");
        assert_eq!(token_kind(Some("  ")), "no token");
        assert_eq!(token_kind(Some("abc.def.ghi")), "a JWT");
        assert_eq!(
            token_kind(Some(&crate::auth::Auth::minio_jwt("ak", "sk").token())),
            "a JWT"
        );
        assert_eq!(token_kind(Some("s3cret")), "a plain token");
        assert_eq!(token_kind(Some("a.b")), "a plain token");
        assert_eq!(token_kind(Some("a.b.c d")), "a plain token");
    }

    #[test]
    fn clocks_and_durations() {
        let s = 1_000_000_000i128;
        assert_eq!(duration_words(960 * s as u128), "16m0s");
        assert_eq!(duration_words(360 * s as u128 + 400_000_000), "6m0s");
        assert_eq!(duration_words(1_499_999), "1ms");
        assert_eq!(
            clock_words(960 * s, Duration::from_secs(2)),
            "its clock is 16m0s behind ours"
        );
        assert_eq!(
            clock_words(-301 * s, Duration::from_secs(1)),
            "its clock is 5m1s ahead of ours"
        );
        assert_eq!(
            clock_words(s, Duration::from_secs(2)),
            "its clock is within 2s of ours"
        );
    }

    #[test]
    fn auth_failures_in_words() {
        let now = SystemTime::now();
        let max = Duration::from_secs(900);
        let f = auth_failure(&AuthError::InvalidToken, Some("t"), None, now, max);
        assert_eq!(
            (f.check.as_str(), f.body.as_str(), f.fix),
            (
                "invalid token (a plain token)",
                "invalid token",
                "check that every node has the same token"
            )
        );
        let f = auth_failure(&AuthError::InvalidToken, Some("a.b.c"), None, now, max);
        assert_eq!(f.check, "invalid token (a JWT)");
        assert_eq!(
            f.fix,
            "check that every node has the same access key and secret key"
        );
        let f = auth_failure(&AuthError::Expired, Some("a.b.c"), None, now, max);
        assert_eq!(f.check, "expired token (a JWT)");
        let f = auth_failure(&AuthError::MissingToken, None, None, now, max);
        assert_eq!(f.body, "missing token");
        let f = auth_failure(&AuthError::BadTimeHeader, Some("t"), None, now, max);
        assert_eq!(f.check, "missing or malformed X-Minio-Time header");
        let ours = crate::wire::GridTime::from(now).unix_nanos();
        let f = auth_failure(
            &AuthError::ClockSkew("16m0s".into()),
            Some("t"),
            Some(ours - 960_000_000_000),
            now,
            max,
        );
        assert_eq!(
            (f.check.as_str(), f.body.as_str()),
            (
                "clock skew: its clock is 16m0s behind ours (at most 15m0s allowed)",
                "clock skew of 16m0s (at most 15m0s allowed)"
            )
        );
    }

    #[test]
    fn tls_errors_in_words() {
        let d = TlsSide::Dialer {
            server_name: "127.0.0.1",
        };
        let w = |e: rustls::Error, side| describe_tls(&e, side);
        assert_eq!(
            w(
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                d
            ),
            problem(
                "its certificate is signed by an unknown authority",
                "check that our CA bundle (--tls-ca) contains the CA that signed its certificate"
            )
        );
        assert_eq!(
            w(
                rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                TlsSide::Acceptor
            )
            .what,
            "its client certificate is signed by an unknown authority"
        );
        assert_eq!(
            w(
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    expected: rustls::pki_types::ServerName::try_from("127.0.0.1")
                        .unwrap()
                        .to_owned(),
                    presented: vec!["DnsName(\"other.example\")".into()],
                }),
                d
            )
            .what,
            "its certificate is not valid for the name 127.0.0.1 (it names other.example)"
        );
        assert_eq!(
            w(rustls::Error::NoCertificatesPresented, TlsSide::Acceptor).what,
            "it presented no client certificate, and mutual TLS requires one"
        );
        assert_eq!(
            w(
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                d
            )
            .what,
            "it requires a client certificate and we sent none"
        );
        assert_eq!(
            w(
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                d
            )
            .what,
            "it does not speak TLS"
        );
        let io = io::Error::new(io::ErrorKind::InvalidData, rustls::Error::DecryptError);
        assert!(tls_problem(&io, d).is_some());
        assert!(tls_problem(&io::ErrorKind::UnexpectedEof.into(), d).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_once_per_key_per_interval() {
        let l = WarnLimiter::new(Duration::from_secs(30), 2);
        assert_eq!(l.due("a"), Some(0));
        assert_eq!(l.due("a"), None);
        assert_eq!(l.due("a"), None);
        assert_eq!(l.due("b"), Some(0));
        // Full of recent keys: a third key is held back.
        assert_eq!(l.due("c"), None);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(l.due("a"), Some(2));
        // Expired keys make room.
        assert_eq!(l.due("c"), Some(0));
    }
}
