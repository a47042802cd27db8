//! The WebSocket upgrade (PROTOCOL.md §2.2–2.3) and the grid handshake's message exchange
//! (§4.2). The checks themselves are pure and live in `proto::handshake`.

use super::dial::{BoxRead, BoxWrite};
use super::ws::{self, FrameDecoder, Need, Role, WsEvent};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The GUID of RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest HTTP response head we read during the upgrade.
const MAX_HTTP_HEAD: usize = 16 * 1024;

/// Why an outgoing connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("dial: {0}")]
    Io(#[from] io::Error),
    #[error("dial and upgrade did not finish within {0:?}")]
    Timeout(std::time::Duration),
    #[error("upgrade refused with HTTP status {0}")]
    HttpStatus(u16),
    #[error("invalid upgrade response: {0}")]
    BadUpgrade(&'static str),
    #[error("invalid handshake response: {0}")]
    BadResponse(String),
    #[error("connection rejected: {0}")]
    Rejected(String),
    #[error("{0}")]
    Ws(#[from] ws::WsError),
}

/// `Sec-WebSocket-Accept` for a key.
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID.as_bytes());
    STANDARD.encode(h.finalize())
}

/// Sends the upgrade request and checks the 101 response. Returns any bytes read past the
/// response head (the start of the first frame).
pub(crate) async fn client_upgrade(
    r: &mut BoxRead,
    w: &mut BoxWrite,
    authority: &str,
    path: &str,
    token: &str,
    time_header: &str,
) -> Result<BytesMut, DialError> {
    let key_bytes: [u8; 16] = rand::random();
    let key = STANDARD.encode(key_bytes);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nAuthorization: Bearer {token}\r\n\
         X-Minio-Time: {time_header}\r\n\r\n"
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
                if code != 101 {
                    return Err(DialError::HttpStatus(code));
                }
                let get = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| h.value)
                };
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
    #[test]
    fn rfc6455_example_key() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
