//! Payload structures of the connection-level ops (PROTOCOL.md §3.6): MessagePack maps with
//! string keys in a fixed order. Decoders accept any map form, str or bin keys, skip unknown
//! keys and leave missing keys at their zero value; value types are strict.

use super::error::DecodeError;
use super::msgpack::{self, Reader};
use super::time::GridTime;
use bytes::{Bytes, BytesMut};

/// A 16-byte instance UUID in RFC 4122 byte order.
pub type InstanceId = [u8; 16];

fn read_uuid(r: &mut Reader<'_>, field: &'static str) -> Result<InstanceId, DecodeError> {
    let b = r.bin(field)?;
    b.try_into().map_err(|_| DecodeError::InvalidUuidLength {
        field,
        len: b.len(),
    })
}

/// Iterates the key/value pairs of a map, calling `f(key, reader)` for each; `f` must consume
/// the value and return `true`, or return `false` to have it skipped.
fn read_map<'a>(
    data: &'a [u8],
    what: &'static str,
    mut f: impl FnMut(&[u8], &mut Reader<'a>) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(data);
    let n = r.map_len(what)?;
    for _ in 0..n {
        let key = r.key()?;
        if !f(key, &mut r)? {
            r.skip()?;
        }
    }
    Ok(())
}

fn to_bytes(f: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(96);
    f(&mut b);
    b.freeze()
}

/// The dialer's handshake request (op 1). `Debug` does not show the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The dialer manager's instance ID.
    pub id: InstanceId,
    /// The dialer's own host string.
    pub host: String,
    /// The dialer's clock when sending.
    pub time: GridTime,
    /// The authentication token.
    pub token: String,
}

impl Default for ConnectRequest {
    fn default() -> Self {
        ConnectRequest {
            id: [0; 16],
            host: String::new(),
            time: GridTime::ZERO,
            token: String::new(),
        }
    }
}

impl std::fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectRequest")
            .field("id", &self.id)
            .field("host", &self.host)
            .field("time", &self.time)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl ConnectRequest {
    /// Encodes as `{"ID","Host","Time","Token"}`.
    pub fn encode(&self) -> Bytes {
        to_bytes(|b| {
            msgpack::put_map_header(b, 4);
            msgpack::put_str(b, "ID");
            msgpack::put_bin(b, &self.id);
            msgpack::put_str(b, "Host");
            msgpack::put_str(b, &self.host);
            msgpack::put_str(b, "Time");
            msgpack::put_time(b, self.time);
            msgpack::put_str(b, "Token");
            msgpack::put_str(b, &self.token);
        })
    }

    /// Decodes a connect request payload.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut v = ConnectRequest::default();
        read_map(data, "connect request", |k, r| {
            match k {
                b"ID" => v.id = read_uuid(r, "ID")?,
                b"Host" => v.host = r.str("Host")?.to_owned(),
                b"Time" => v.time = r.time("Time")?,
                b"Token" => v.token = r.str("Token")?.to_owned(),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// The acceptor's handshake response (op 2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    /// The acceptor manager's instance ID (also on rejection).
    pub id: InstanceId,
    /// Whether the connection was accepted.
    pub accepted: bool,
    /// Why it was rejected; empty when accepted.
    pub rejected_reason: String,
}

impl ConnectResponse {
    /// Encodes as `{"ID","Accepted","RejectedReason"}`.
    pub fn encode(&self) -> Bytes {
        to_bytes(|b| {
            msgpack::put_map_header(b, 3);
            msgpack::put_str(b, "ID");
            msgpack::put_bin(b, &self.id);
            msgpack::put_str(b, "Accepted");
            msgpack::put_bool(b, self.accepted);
            msgpack::put_str(b, "RejectedReason");
            msgpack::put_str(b, &self.rejected_reason);
        })
    }

    /// Decodes a connect response payload.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut v = ConnectResponse::default();
        read_map(data, "connect response", |k, r| {
            match k {
                b"ID" => v.id = read_uuid(r, "ID")?,
                b"Accepted" => v.accepted = r.bool("Accepted")?,
                b"RejectedReason" => v.rejected_reason = r.str("RejectedReason")?.to_owned(),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// A connection-level ping's payload (op 3, MuxID 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingPayload {
    /// The sender's clock.
    pub t: GridTime,
}

impl Default for PingPayload {
    fn default() -> Self {
        PingPayload { t: GridTime::ZERO }
    }
}

impl PingPayload {
    /// Encodes as `{"t"}`.
    pub fn encode(&self) -> Bytes {
        to_bytes(|b| {
            msgpack::put_map_header(b, 1);
            msgpack::put_str(b, "t");
            msgpack::put_time(b, self.t);
        })
    }

    /// Decodes a ping payload.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut v = PingPayload::default();
        read_map(data, "ping", |k, r| {
            if k == b"t" {
                v.t = r.time("t")?;
                return Ok(true);
            }
            Ok(false)
        })?;
        Ok(v)
    }
}

/// A pong's payload (op 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PongPayload {
    /// True when the callee has no such stream.
    pub not_found: bool,
    /// An error text, if the stream is failing.
    pub err: Option<String>,
    /// The timestamp copied from the ping (zero time if it had none).
    pub t: GridTime,
}

impl Default for PongPayload {
    fn default() -> Self {
        PongPayload {
            not_found: false,
            err: None,
            t: GridTime::ZERO,
        }
    }
}

impl PongPayload {
    /// Encodes as `{"nf","e","t"}`.
    pub fn encode(&self) -> Bytes {
        to_bytes(|b| {
            msgpack::put_map_header(b, 3);
            msgpack::put_str(b, "nf");
            msgpack::put_bool(b, self.not_found);
            msgpack::put_str(b, "e");
            match &self.err {
                Some(e) => msgpack::put_str(b, e),
                None => msgpack::put_nil(b),
            }
            msgpack::put_str(b, "t");
            msgpack::put_time(b, self.t);
        })
    }

    /// Decodes a pong payload.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut v = PongPayload::default();
        read_map(data, "pong", |k, r| {
            match k {
                b"nf" => v.not_found = r.bool("nf")?,
                b"e" => v.err = r.opt_str("e")?.map(str::to_owned),
                b"t" => v.t = r.time("t")?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// A mux connect error's payload (op 6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MuxConnectErrorPayload {
    /// The error text.
    pub error: String,
}

impl MuxConnectErrorPayload {
    /// Encodes as `{"Error"}`.
    pub fn encode(&self) -> Bytes {
        to_bytes(|b| {
            msgpack::put_map_header(b, 1);
            msgpack::put_str(b, "Error");
            msgpack::put_str(b, &self.error);
        })
    }

    /// Decodes a mux connect error payload.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut v = MuxConnectErrorPayload::default();
        read_map(data, "mux connect error", |k, r| {
            if k == b"Error" {
                v.error = r.str("Error")?.to_owned();
                return Ok(true);
            }
            Ok(false)
        })?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn id() -> InstanceId {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn appendix_a_connect_request() {
        let want = h(
            "84 a2 49 44 c4 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f
            a4 48 6f 73 74 b4 68 74 74 70 3a 2f 2f 31 30 2e 30 2e 30 2e 31 3a 39 30 30 30
            a4 54 69 6d 65 c7 0c 05 00 00 00 00 65 53 f1 00 07 5b cd 15
            a5 54 6f 6b 65 6e a5 64 65 62 75 67",
        );
        let v = ConnectRequest {
            id: id(),
            host: "http://10.0.0.1:9000".into(),
            time: GridTime {
                secs: 1_700_000_000,
                nanos: 123_456_789,
            },
            token: "debug".into(),
        };
        assert_eq!(&v.encode()[..], &want[..]);
        assert_eq!(ConnectRequest::decode(&want).unwrap(), v);
    }

    #[test]
    fn appendix_a_connect_response_and_errors() {
        let want = h(
            "83 a2 49 44 c4 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f
            a8 41 63 63 65 70 74 65 64 c3 ae 52 65 6a 65 63 74 65 64 52 65 61 73 6f 6e a0",
        );
        let v = ConnectResponse {
            id: id(),
            accepted: true,
            rejected_reason: String::new(),
        };
        assert_eq!(&v.encode()[..], &want[..]);
        assert_eq!(ConnectResponse::decode(&want).unwrap(), v);

        let e = h("81 a5 45 72 72 6f 72 af 49 6e 76 61 6c 69 64 20 48 61 6e 64 6c 65 72");
        let p = MuxConnectErrorPayload {
            error: "Invalid Handler".into(),
        };
        assert_eq!(&p.encode()[..], &e[..]);
        assert_eq!(MuxConnectErrorPayload::decode(&e).unwrap(), p);
    }

    #[test]
    fn appendix_a_zero_time_pong() {
        let want = h("83 a2 6e 66 c2 a1 65 c0 a1 74 c7 0c 05 ff ff ff f1 88 6e 09 00 00 00 00 00");
        let p = PongPayload::default();
        assert_eq!(&p.encode()[..], &want[..]);
        assert_eq!(PongPayload::decode(&want).unwrap(), p);
    }

    #[test]
    fn lenient_keys_strict_values() {
        // bin key, an unknown key with a nested value, map16 header.
        let mut v = vec![0xde, 0x00, 0x02, 0xc4, 0x01, b't'];
        v.extend(h("c7 0c 05 00 00 00 00 65 53 f1 00 00 00 00 05"));
        v.extend([0xa1, b'x', 0x92, 0x01, 0xc0]);
        assert_eq!(PingPayload::decode(&v).unwrap().t.nanos, 5);
        // A bin where a str is required is an error.
        let bad = [0x81, 0xa5, b'E', b'r', b'r', b'o', b'r', 0xc4, 0x00];
        assert!(MuxConnectErrorPayload::decode(&bad).is_err());
        // Wrong UUID length.
        let bad = [0x81, 0xa2, b'I', b'D', 0xc4, 0x01, 0x00];
        assert!(matches!(
            ConnectResponse::decode(&bad),
            Err(DecodeError::InvalidUuidLength { len: 1, .. })
        ));
        // Standard timestamp (type -1, 8 bytes) is accepted.
        let std8 = [0x81, 0xa1, b't', 0xd7, 0xff, 0, 0, 0, 4, 0, 0, 0, 10];
        assert_eq!(
            PingPayload::decode(&std8).unwrap().t,
            GridTime { secs: 10, nanos: 1 }
        );
    }
}
