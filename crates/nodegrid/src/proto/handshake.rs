//! The acceptor's checks of a Connect message (PROTOCOL.md §4.2), as a pure function so every
//! rejection path is unit-tested without sockets.

use crate::auth::{check_skew, Auth, AuthError};
use crate::wire::{should_dial, ConnectRequest, DecodeError, Message, Op};
use std::time::{Duration, SystemTime};

/// What the acceptor knows when it checks a Connect.
pub(crate) struct AcceptContext<'a> {
    pub local: &'a str,
    pub hosts: &'a [String],
    pub auth: &'a Auth,
    pub max_skew: Duration,
    pub now: SystemTime,
}

/// Checks the first message of a session in the reference's order and returns the parsed
/// request, or the exact rejection reason to send back.
pub(crate) fn check_connect(
    first: Result<Message, DecodeError>,
    ctx: &AcceptContext<'_>,
) -> Result<ConnectRequest, String> {
    let msg = first.map_err(|e| format!("error parsing grid connect: {e}"))?;
    if msg.op != Op::Connect {
        return Err(format!("unexpected connect op: {}", msg.op));
    }
    let req = ConnectRequest::decode(&msg.payload)
        .map_err(|e| format!("error parsing connectReq: {e}"))?;
    if req.host == ctx.local || !ctx.hosts.contains(&req.host) {
        return Err(format!("unknown incoming host: {}", req.host));
    }
    check_skew(req.time.unix_nanos(), ctx.now, ctx.max_skew).map_err(|e| match e {
        AuthError::ClockSkew(d) => format!("time difference too large between servers: {d}"),
        other => other.to_string(),
    })?;
    ctx.auth
        .validate(&req.token)
        .map_err(|e| format!("auth token: {e}"))?;
    if should_dial(ctx.local, &req.host) {
        return Err("grid: expected to be client side, not server side".to_string());
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::GridTime;
    use bytes::Bytes;

    const A: &str = "http://127.0.0.1:9101";
    const B: &str = "http://127.0.0.1:9102";

    fn ctx<'a>(
        local: &'a str,
        hosts: &'a [String],
        auth: &'a Auth,
        now: SystemTime,
    ) -> AcceptContext<'a> {
        AcceptContext {
            local,
            hosts,
            auth,
            max_skew: Duration::from_secs(300),
            now,
        }
    }

    fn connect(host: &str, token: &str, time: SystemTime) -> Result<Message, DecodeError> {
        let mut m = Message::new(Op::Connect, 0);
        m.payload = ConnectRequest {
            id: [1; 16],
            host: host.into(),
            time: time.into(),
            token: token.into(),
        }
        .encode();
        Ok(m)
    }

    #[test]
    fn every_rejection_reason() {
        let hosts = vec![A.to_string(), B.to_string()];
        let auth = Auth::shared_token("t");
        let now = SystemTime::now();
        // A dials B (vectors' meta), so B is the acceptor.
        let c = ctx(B, &hosts, &auth, now);
        assert_eq!(check_connect(connect(A, "t", now), &c).unwrap().host, A);
        assert_eq!(
            check_connect(connect("http://x:1", "t", now), &c).unwrap_err(),
            "unknown incoming host: http://x:1"
        );
        assert_eq!(
            check_connect(connect(A, "bad", now), &c).unwrap_err(),
            "auth token: Authentication failed, check your access credentials"
        );
        let inside = now - Duration::from_secs(299);
        assert!(check_connect(connect(A, "t", inside), &c).is_ok());
        let outside = now - Duration::from_millis(360_500);
        assert_eq!(
            check_connect(connect(A, "t", outside), &c).unwrap_err(),
            "time difference too large between servers: 6m0.5s"
        );
        let future = now + Duration::from_secs(301);
        assert!(check_connect(connect(A, "t", future), &c)
            .unwrap_err()
            .starts_with("time difference too large between servers: -5m1"));
        // Wrong side: A receiving a connect from B.
        let ca = ctx(A, &hosts, &auth, now);
        assert_eq!(
            check_connect(connect(B, "t", now), &ca).unwrap_err(),
            "grid: expected to be client side, not server side"
        );
        let mut ping = Message::new(Op::Ping, 0);
        ping.payload = Bytes::new();
        assert_eq!(
            check_connect(Ok(ping), &c).unwrap_err(),
            "unexpected connect op: Ping"
        );
        let mut unk = Message::new(Op::Unknown(42), 0);
        unk.payload = Bytes::new();
        assert_eq!(
            check_connect(Ok(unk), &c).unwrap_err(),
            "unexpected connect op: Op(42)"
        );
        let mut bad = Message::new(Op::Connect, 0);
        bad.payload = Bytes::from_static(b"\xc0");
        assert!(check_connect(Ok(bad), &c)
            .unwrap_err()
            .starts_with("error parsing connectReq: "));
        assert!(check_connect(Err(DecodeError::WrongTupleLen(6)), &c)
            .unwrap_err()
            .starts_with("error parsing grid connect: "));
        let _ = GridTime::ZERO;
    }
}
