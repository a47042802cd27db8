//! The WebSocket upgrade (PROTOCOL.md §2.2–2.3) and the grid handshake's message exchange
//! (§4.2). The checks themselves are pure and live in `proto::handshake`.

use super::diagnose::NODEGRID_HOST_HEADER;
use super::dial::{BoxRead, BoxWrite};
use super::ws::{self, FrameDecoder, Need, Role, WsEvent};
use crate::wire::GridTime;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};
use std::io;
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The GUID of RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest HTTP response head we read during the upgrade.
const MAX_HTTP_HEAD: usize = 16 * 1024;
/// Most bytes of a refusal's body (the acceptor's reason) we read and show.
pub(crate) const MAX_REFUSAL_BODY: usize = 512;
/// How long we wait for a refusal's body after its head.
const REFUSAL_BODY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Why an outgoing connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("dial: {0}")]
    Io(#[from] io::Error),
    #[error("dial and upgrade did not finish within {0:?}")]
    Timeout(std::time::Duration),
    #[error("upgrade refused with HTTP status {status}{}", reason_suffix(.reason))]
    HttpStatus {
        status: u16,
        /// The body of the answer, when it had one: a nodegrid acceptor says there why it
        /// refused (at most [`MAX_REFUSAL_BODY`] bytes, control characters replaced).
        reason: Option<String>,
        /// Our clock minus the acceptor's, in ns, from the answer's `Date` header (1 s
        /// resolution), when it had one.
        clock_nanos: Option<i128>,
    },
    #[error("invalid upgrade response: {0}")]
    BadUpgrade(&'static str),
    #[error("invalid handshake response: {0}")]
    BadResponse(String),
    #[error("connection rejected: {0}")]
    Rejected(String),
    /// We refused an accepted connection because the host lists differ (`strict_host_list`);
    /// the text says how.
    #[error("{0}")]
    HostList(String),
    #[error("{0}")]
    Ws(#[from] ws::WsError),
}

fn reason_suffix(reason: &Option<String>) -> String {
    reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

/// `Sec-WebSocket-Accept` for a key.
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID.as_bytes());
    STANDARD.encode(h.finalize())
}

/// Sends the upgrade request and checks the 101 response. Returns any bytes read past the
/// response head (the start of the first frame). `local_host` (our host string) goes in the
/// `X-Nodegrid-Host` header, after the headers the reference writes (§2.2).
pub(crate) async fn client_upgrade(
    r: &mut BoxRead,
    w: &mut BoxWrite,
    authority: &str,
    path: &str,
    token: &str,
    time_header: &str,
    local_host: &str,
) -> Result<BytesMut, DialError> {
    let key_bytes: [u8; 16] = rand::random();
    let key = STANDARD.encode(key_bytes);
    // A host string that is not a plain header value is left out rather than sent broken.
    let claim = if !local_host.is_empty() && local_host.bytes().all(|b| b.is_ascii_graphic()) {
        format!("{NODEGRID_HOST_HEADER}: {local_host}\r\n")
    } else {
        String::new()
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nAuthorization: Bearer {token}\r\n\
         X-Minio-Time: {time_header}\r\n{claim}\r\n"
    );
    w.write_all(req.as_bytes()).await?;
    w.flush().await?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.len() >= MAX_HTTP_HEAD {
            return Err(DialError::BadUpgrade("response head too large"));
        }
        let n = r.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(DialError::BadUpgrade("connection closed during upgrade"));
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return Err(DialError::BadUpgrade("malformed HTTP response")),
            Ok(httparse::Status::Complete(head_len)) => {
                let code = resp.code.unwrap_or(0);
                let get = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| h.value)
                };
                if code != 101 {
                    let clock_nanos = get("date")
                        .and_then(|d| std::str::from_utf8(d).ok())
                        .and_then(|d| httpdate::parse_http_date(d).ok())
                        .map(|date| {
                            GridTime::from(SystemTime::now()).unix_nanos()
                                - GridTime::from(date).unix_nanos()
                        });
                    let body_len = get("content-length")
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0)
                        .min(MAX_REFUSAL_BODY);
                    let _ = buf.split_to(head_len);
                    let reason = read_refusal_body(r, &mut buf, body_len).await;
                    return Err(DialError::HttpStatus {
                        status: code,
                        reason,
                        clock_nanos,
                    });
                }
                if !get("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")) {
                    return Err(DialError::BadUpgrade("missing Upgrade: websocket"));
                }
                let want = accept_key(key.as_bytes());
                if get("sec-websocket-accept") != Some(want.as_bytes()) {
                    return Err(DialError::BadUpgrade("wrong Sec-WebSocket-Accept"));
                }
                let _ = buf.split_to(head_len);
                return Ok(buf);
            }
        }
    }
}

/// Reads the first `len` bytes of a refusal's body (some may be in `buf` already), waiting
/// briefly; returns them as one line of text, or `None` when there is no body.
async fn read_refusal_body(r: &mut BoxRead, buf: &mut BytesMut, len: usize) -> Option<String> {
    if len == 0 {
        return None;
    }
    let _ = tokio::time::timeout(REFUSAL_BODY_WAIT, async {
        while buf.len() < len {
            match r.read_buf(buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let body = &buf[..buf.len().min(len)];
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Reads WebSocket frames until the first data message. Answers nothing (control frames
/// during the handshake are dropped). `Ok(None)` means the peer closed cleanly before sending
/// anything (§11 item 30: no rejection is written then).
pub(crate) async fn read_first_message(
    r: &mut BoxRead,
    buf: &mut BytesMut,
    dec: &mut FrameDecoder,
) -> Result<Option<(Bytes, bool)>, DialError> {
    loop {
        match dec.decode(buf)? {
            Ok(WsEvent::Binary(b)) => return Ok(Some((b, true))),
            Ok(WsEvent::Text(b)) => return Ok(Some((b, false))),
            Ok(WsEvent::Close) => return Ok(None),
            Ok(WsEvent::Ping(_)) | Ok(WsEvent::Pong) | Ok(WsEvent::Oversized { .. }) => continue,
            Err(Need::More(n)) => {
                buf.reserve(n.max(4096));
                let k = r.read_buf(buf).await?;
                if k == 0 {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Err(DialError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
            }
        }
    }
}

/// Writes one grid message as one binary frame (masked on the dialer side).
pub(crate) async fn write_message(w: &mut BoxWrite, payload: &[u8], role: Role) -> io::Result<()> {
    let mask = (role == Role::Dialer).then(rand::random::<[u8; 4]>);
    let f = ws::frame(0x2, payload, mask);
    w.write_all(&f).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::IoHalves;

    /// Runs `client_upgrade` against a server that reads the request and answers `answer`;
    /// returns the result and the request as the server saw it.
    async fn upgrade_against(answer: String) -> (Result<BytesMut, DialError>, String) {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut req = Vec::new();
            while !req.ends_with(b"\r\n\r\n") {
                let mut c = [0u8; 1];
                if b.read(&mut c).await.unwrap() == 0 {
                    break;
                }
                req.push(c[0]);
            }
            b.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(req).unwrap()
        });
        let mut io = IoHalves::from_io(a);
        let r = client_upgrade(
            &mut io.read,
            &mut io.write,
            "10.0.0.2:9000",
            "/minio/grid/v1",
            "tok",
            "1",
            "http://10.0.0.1:9000",
        )
        .await;
        (r, server.await.unwrap())
    }

    #[tokio::test]
    async fn a_refusal_brings_its_reason_and_the_peers_clock() {
        let date = httpdate::fmt_http_date(SystemTime::now() + std::time::Duration::from_secs(960));
        let (r, req) = upgrade_against(format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 13\r\ndate: {date}\r\n\r\ninvalid\ntoken"
        ))
        .await;
        assert!(req.ends_with("X-Minio-Time: 1\r\nX-Nodegrid-Host: http://10.0.0.1:9000\r\n\r\n"));
        let Err(DialError::HttpStatus {
            status: 403,
            reason: Some(reason),
            clock_nanos: Some(c),
        }) = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(reason, "invalid token");
        // Our clock is ~16 minutes behind the peer's (1 s resolution).
        assert!((-961_000_000_000..=-958_000_000_000).contains(&c), "{c}");
        // MinIO's refusal: no body, no date; the text is the old one.
        let (r, _) = upgrade_against("HTTP/1.1 403 Forbidden\r\n\r\n".into()).await;
        let e = r.unwrap_err();
        assert_eq!(e.to_string(), "upgrade refused with HTTP status 403");
        // A long body is cut at MAX_REFUSAL_BODY.
        let body = "x".repeat(2000);
        let (r, _) = upgrade_against(format!(
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 2000\r\n\r\n{body}"
        ))
        .await;
        let Err(DialError::HttpStatus {
            reason: Some(reason),
            ..
        }) = r
        else {
            panic!()
        };
        assert_eq!(reason.len(), MAX_REFUSAL_BODY);
    }

    #[test]
    fn rfc6455_example_key() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
