//! Message::decode on arbitrary bytes, then every payload decoder on the payload.
//!
//! Invariants checked besides "never panics":
//! * a message that decodes re-encodes to exactly `encoded_len()` bytes and decodes back to an
//!   equal message;
//! * a payload struct that decodes re-encodes and decodes back to an equal struct.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nodegrid::wire::{
    ConnectRequest, ConnectResponse, Message, MuxConnectErrorPayload, PingPayload, PongPayload,
};

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(m) = Message::decode(&buf) {
        let wire = m.to_bytes().expect("a decoded message must re-encode");
        assert_eq!(
            wire.len(),
            m.encoded_len(),
            "encoded_len disagrees with encode"
        );
        let again = Message::decode(&wire).expect("a re-encoded message must decode");
        assert_eq!(again, m, "decode(encode(m)) != m");
        payloads(&m.payload);
    }
    // The payload decoders also face raw peer bytes: feed them the whole input too.
    payloads(data);
});

fn payloads(p: &[u8]) {
    if let Ok(v) = ConnectRequest::decode(p) {
        assert_eq!(ConnectRequest::decode(&v.encode()).as_ref(), Ok(&v));
    }
    if let Ok(v) = ConnectResponse::decode(p) {
        assert_eq!(ConnectResponse::decode(&v.encode()).as_ref(), Ok(&v));
    }
    if let Ok(v) = PingPayload::decode(p) {
        assert_eq!(PingPayload::decode(&v.encode()).as_ref(), Ok(&v));
    }
    if let Ok(v) = PongPayload::decode(p) {
        assert_eq!(PongPayload::decode(&v.encode()).as_ref(), Ok(&v));
    }
    if let Ok(v) = MuxConnectErrorPayload::decode(p) {
        assert_eq!(MuxConnectErrorPayload::decode(&v.encode()).as_ref(), Ok(&v));
    }
}
