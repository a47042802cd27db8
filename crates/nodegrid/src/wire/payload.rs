//! Payload structures of the connection-level ops (PROTOCOL.md §3.6): MessagePack maps with
//! string keys in a fixed order. Decoders accept any map form, str or bin keys, skip unknown
//! keys and leave missing keys at their zero value; value types are strict.
//!
//! nodegrid peers append extension fields to Connect and ConnectResponse ([`NodegridExt`]);
//! a MinIO peer skips them as unknown keys, and without them the bytes are exactly MinIO's.

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
        self.encode_with(None)
    }

    /// Encodes as [`ConnectRequest::encode`] does, followed by nodegrid's extension fields when
    /// `ext` is given (PROTOCOL.md §3.6).
    pub fn encode_with(&self, ext: Option<&NodegridExt>) -> Bytes {
        to_bytes(|b| {
            msgpack::put_map_header(b, 4 + NodegridExt::fields(ext));
            msgpack::put_str(b, "ID");
            msgpack::put_bin(b, &self.id);
            msgpack::put_str(b, "Host");
            msgpack::put_str(b, &self.host);
            msgpack::put_str(b, "Time");
            msgpack::put_time(b, self.time);
            msgpack::put_str(b, "Token");
            msgpack::put_str(b, &self.token);
            if let Some(e) = ext {
                e.put(b);
            }
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
        self.encode_with(None)
    }

    /// Encodes as [`ConnectResponse::encode`] does, followed by nodegrid's extension fields
    /// when `ext` is given (PROTOCOL.md §3.6).
    pub fn encode_with(&self, ext: Option<&NodegridExt>) -> Bytes {
        to_bytes(|b| {
            msgpack::put_map_header(b, 3 + NodegridExt::fields(ext));
            msgpack::put_str(b, "ID");
            msgpack::put_bin(b, &self.id);
            msgpack::put_str(b, "Accepted");
            msgpack::put_bool(b, self.accepted);
            msgpack::put_str(b, "RejectedReason");
            msgpack::put_str(b, &self.rejected_reason);
            if let Some(e) = ext {
                e.put(b);
            }
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

/// The version of nodegrid's handshake extension this build writes ([`NodegridExt::version`]).
pub const NODEGRID_EXT_VERSION: u32 = 1;
/// Most host IDs a [`NodegridExt`] may carry; a peer announcing more is read without them.
pub const MAX_EXT_HOSTS: usize = 16 * 1024;

const KEY_VERSION: &str = "NgExt";
const KEY_HOSTS: &str = "NgHosts";
const KEY_HOST_IDS: &str = "NgHostIDs";
const KEY_MAX_MESSAGE: &str = "NgMaxMsg";

/// nodegrid's extension of Connect and ConnectResponse (PROTOCOL.md §3.6): four more map
/// fields after the reference's, which a MinIO peer skips as unknown keys. A nodegrid acceptor
/// adds them to its ConnectResponse only when the Connect carried them, so a MinIO dialer gets
/// the reference's bytes.
///
/// | key | type | content |
/// | --- | --- | --- |
/// | `NgExt` | uint | the extension's version, [`NODEGRID_EXT_VERSION`] |
/// | `NgHosts` | uint (64 bits) | fingerprint of the sender's host list, order-insensitive |
/// | `NgHostIDs` | bin | 4 bytes (big-endian) per host of the list: its [`NodegridExt::host_id`], ascending |
/// | `NgMaxMsg` | uint | the sender's `max_message_size` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodegridExt {
    /// The extension's version (1 for the fields above; later versions only add fields).
    pub version: u32,
    /// [`NodegridExt::fingerprint`] of the sender's host list.
    pub hosts_fingerprint: u64,
    /// [`NodegridExt::host_id`] of each host of the sender's list, ascending, no duplicates.
    /// Empty when the peer sent more than [`MAX_EXT_HOSTS`].
    pub host_ids: Vec<u32>,
    /// The sender's `max_message_size`, in bytes.
    pub max_message_size: u64,
}

impl NodegridExt {
    /// The extension describing a node with `hosts` (its whole host list, itself included) and
    /// `max_message_size`.
    pub fn new(hosts: &[String], max_message_size: usize) -> NodegridExt {
        let mut ids: Vec<u32> = hosts.iter().map(|h| Self::host_id(h)).collect();
        ids.sort_unstable();
        ids.dedup();
        NodegridExt {
            version: NODEGRID_EXT_VERSION,
            hosts_fingerprint: Self::fingerprint(hosts),
            host_ids: ids,
            max_message_size: max_message_size as u64,
        }
    }

    /// A host list's fingerprint: XXH3-64 over the distinct host strings in byte order, each
    /// preceded by its length as a 4-byte big-endian integer. The order of the list does not
    /// matter; every byte of every string does.
    pub fn fingerprint(hosts: &[String]) -> u64 {
        let mut sorted: Vec<&str> = hosts.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut v = Vec::with_capacity(sorted.iter().map(|h| h.len() + 4).sum());
        for h in sorted {
            v.extend_from_slice(&(h.len() as u32).to_be_bytes());
            v.extend_from_slice(h.as_bytes());
        }
        twox_hash::XxHash3_64::oneshot(&v)
    }

    /// A host string's 32-bit ID: the low 32 bits of its XXH3-64.
    pub fn host_id(host: &str) -> u32 {
        twox_hash::XxHash3_64::oneshot(host.as_bytes()) as u32
    }

    /// Whether the peer's host list is the one `hosts` (ours) makes.
    pub fn same_hosts(&self, hosts: &[String]) -> bool {
        self.hosts_fingerprint == Self::fingerprint(hosts)
    }

    /// The hosts of `ours` that the sender's list lacks (none when it sent no host IDs).
    pub fn missing_from_peer<'h>(&self, ours: &'h [String]) -> Vec<&'h str> {
        if self.host_ids.is_empty() {
            return Vec::new();
        }
        ours.iter()
            .map(String::as_str)
            .filter(|h| self.host_ids.binary_search(&Self::host_id(h)).is_err())
            .collect()
    }

    /// How many hosts of the sender's list are not in `ours` (0 when it sent no host IDs).
    pub fn unknown_to_us(&self, ours: &[String]) -> usize {
        let mine: std::collections::HashSet<u32> = ours.iter().map(|h| Self::host_id(h)).collect();
        self.host_ids.iter().filter(|id| !mine.contains(id)).count()
    }

    fn fields(ext: Option<&NodegridExt>) -> u32 {
        if ext.is_some() {
            4
        } else {
            0
        }
    }

    /// Writes the four fields (the map header must count them).
    fn put(&self, b: &mut BytesMut) {
        msgpack::put_str(b, KEY_VERSION);
        msgpack::put_uint(b, self.version as u64);
        msgpack::put_str(b, KEY_HOSTS);
        msgpack::put_uint(b, self.hosts_fingerprint);
        msgpack::put_str(b, KEY_HOST_IDS);
        msgpack::put_bin_header(b, self.host_ids.len() * 4);
        for id in &self.host_ids {
            b.extend_from_slice(&id.to_be_bytes());
        }
        msgpack::put_str(b, KEY_MAX_MESSAGE);
        msgpack::put_uint(b, self.max_message_size);
    }

    /// Reads the extension from a Connect or ConnectResponse payload: `None` when it has no
    /// `NgExt` field (a MinIO peer), an error when a field has the wrong type.
    pub fn decode(payload: &[u8]) -> Result<Option<NodegridExt>, DecodeError> {
        let mut version = None;
        let mut v = NodegridExt {
            version: 0,
            hosts_fingerprint: 0,
            host_ids: Vec::new(),
            max_message_size: 0,
        };
        read_map(payload, "nodegrid extension", |k, r| {
            match k {
                b"NgExt" => version = Some(r.uint(KEY_VERSION, u32::MAX as u64)? as u32),
                b"NgHosts" => v.hosts_fingerprint = r.uint(KEY_HOSTS, u64::MAX)?,
                b"NgHostIDs" => {
                    let ids = r.bin(KEY_HOST_IDS)?;
                    if ids.len() <= MAX_EXT_HOSTS * 4 {
                        v.host_ids = ids
                            .chunks_exact(4)
                            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                            .collect();
                        v.host_ids.sort_unstable();
                        v.host_ids.dedup();
                    }
                }
                b"NgMaxMsg" => v.max_message_size = r.uint(KEY_MAX_MESSAGE, u64::MAX)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(version.map(|version| NodegridExt { version, ..v }))
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

    /// The extension's bytes, with the hashes computed independently (xxhash-rust).
    #[test]
    fn nodegrid_extension_bytes() {
        use xxhash_rust::xxh3::xxh3_64;
        let hosts: Vec<String> = ["http://10.0.0.2:9000", "http://10.0.0.1:9000"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ext = NodegridExt::new(&hosts, 64 << 20);
        // Fingerprint: sorted, each length-prefixed (u32 BE).
        let mut fp_in = Vec::new();
        for h in ["http://10.0.0.1:9000", "http://10.0.0.2:9000"] {
            fp_in.extend_from_slice(&(h.len() as u32).to_be_bytes());
            fp_in.extend_from_slice(h.as_bytes());
        }
        let fp = xxh3_64(&fp_in);
        let mut ids: Vec<u32> = hosts.iter().map(|h| xxh3_64(h.as_bytes()) as u32).collect();
        ids.sort_unstable();
        let mut want = h("a5 4e 67 45 78 74 01 a7 4e 67 48 6f 73 74 73 cf");
        want.extend_from_slice(&fp.to_be_bytes());
        want.extend(h("a9 4e 67 48 6f 73 74 49 44 73 c4 08"));
        for id in &ids {
            want.extend_from_slice(&id.to_be_bytes());
        }
        want.extend(h("a8 4e 67 4d 61 78 4d 73 67 ce 04 00 00 00"));
        let req = ConnectRequest {
            id: id(),
            host: "http://10.0.0.1:9000".into(),
            time: GridTime {
                secs: 1_700_000_000,
                nanos: 123_456_789,
            },
            token: "debug".into(),
        };
        let plain = req.encode();
        let with = req.encode_with(Some(&ext));
        assert_eq!(with[0], 0x88);
        assert_eq!(&with[1..plain.len()], &plain[1..]);
        assert_eq!(&with[plain.len()..], &want[..]);
        assert_eq!(NodegridExt::decode(&with).unwrap(), Some(ext.clone()));
        // Order-insensitive; every byte counts.
        let reversed: Vec<String> = hosts.iter().rev().cloned().collect();
        assert!(ext.same_hosts(&reversed));
        assert!(!ext.same_hosts(&["http://10.0.0.1:9000".into(), "http://10.0.0.2:9001".into()]));
        // A wrongly typed field is an error (callers then ignore the extension); too many host
        // IDs are dropped, not allocated.
        let bad = [0x81, 0xa5, b'N', b'g', b'E', b'x', b't', 0xa1, b'x'];
        assert!(NodegridExt::decode(&bad).is_err());
        let mut big = vec![0x82, 0xa5, b'N', b'g', b'E', b'x', b't', 0x01];
        big.extend(h("a9 4e 67 48 6f 73 74 49 44 73 c6 00 01 00 04"));
        big.extend(vec![0u8; (MAX_EXT_HOSTS + 1) * 4]);
        let x = NodegridExt::decode(&big).unwrap().unwrap();
        assert!(x.host_ids.is_empty() && x.missing_from_peer(&hosts).is_empty());
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
