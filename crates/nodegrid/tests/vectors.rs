//! Golden vectors: every message produced by the reference implementation decodes to exactly
//! the listed fields and re-encodes byte-identically (`tests/data/grid-v1.json`, copied from
//! the shared specification so the test runs in any clone).

use bytes::Bytes;
use nodegrid::wire::{
    crc32_of, split_frame, ConnectRequest, ConnectResponse, Flags, Limits, Message,
    MuxConnectErrorPayload, Op, PingPayload, PongPayload, SubrouteId,
};
use serde_json::Value;

fn data() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/grid-v1.json");
    let text = std::fs::read_to_string(path).expect("read vectors");
    serde_json::from_str(&text).expect("parse vectors")
}

fn hexb(v: &Value) -> Bytes {
    Bytes::from(hex::decode(v.as_str().expect("hex string")).expect("valid hex"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().expect("unsigned")
}

/// Checks one message's decoded fields against the vector's `fields` object.
fn check_fields(name: &str, m: &Message, f: &Value) {
    assert_eq!(m.mux_id, u(&f["mux_id"]), "{name}: mux_id");
    assert_eq!(m.seq as u64, u(&f["seq"]), "{name}: seq");
    assert_eq!(
        m.deadline_ms as u64,
        u(&f["deadline_ms"]),
        "{name}: deadline"
    );
    assert_eq!(m.handler as u64, u(&f["handler"]), "{name}: handler");
    assert_eq!(m.op.as_u8() as u64, u(&f["op"]), "{name}: op");
    assert_eq!(
        m.op.name(),
        f["op_name"].as_str().expect("op_name"),
        "{name}: op name"
    );
    assert_eq!(m.flags.0 as u64, u(&f["flags"]), "{name}: flags");
    assert_eq!(m.payload, hexb(&f["payload_hex"]), "{name}: payload");
    assert_eq!(
        m.payload_opt().is_none(),
        f["payload_nil"].as_bool().expect("payload_nil"),
        "{name}: absent vs empty"
    );
}

/// Checks the CRC facts of a vector that lists them.
fn check_crc(name: &str, v: &Value, wire: &Bytes) {
    if let Some(input) = v.get("crc_input_hex") {
        let input = hexb(input);
        assert_eq!(
            crc32_of(&input) as u64,
            u(&v["crc_value_u32"]),
            "{name}: crc value"
        );
        assert_eq!(
            &wire[wire.len() - 4..],
            &hexb(&v["crc_le_hex"])[..],
            "{name}: crc trailer"
        );
        assert_eq!(
            &wire[..wire.len() - 4],
            &input[..],
            "{name}: crc covers tuple + subroute"
        );
    }
}

fn check_payload(name: &str, m: &Message, decoded: &Value) {
    let p = &m.payload;
    match m.op {
        Op::Connect => {
            let c = ConnectRequest::decode(p).expect("connect request");
            assert_eq!(c.host, decoded["Host"].as_str().unwrap(), "{name}");
            assert_eq!(hex::encode(c.id), decoded["ID"].as_str().unwrap(), "{name}");
            assert_eq!(
                c.time.to_string(),
                decoded["Time"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(c.token, decoded["Token"].as_str().unwrap(), "{name}");
            assert_eq!(c.encode(), *p, "{name}: connect request re-encodes");
        }
        Op::ConnectResponse => {
            let c = ConnectResponse::decode(p).expect("connect response");
            assert_eq!(c.accepted, decoded["Accepted"].as_bool().unwrap(), "{name}");
            assert_eq!(hex::encode(c.id), decoded["ID"].as_str().unwrap(), "{name}");
            assert_eq!(
                c.rejected_reason,
                decoded["RejectedReason"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(c.encode(), *p, "{name}: connect response re-encodes");
        }
        Op::MuxConnectError => {
            let e = MuxConnectErrorPayload::decode(p).expect("mux connect error");
            assert_eq!(e.error, decoded["Error"].as_str().unwrap(), "{name}");
            assert_eq!(e.encode(), *p, "{name}");
        }
        Op::Ping => {
            let e = PingPayload::decode(p).expect("ping");
            assert_eq!(e.t.to_string(), decoded["t"].as_str().unwrap(), "{name}");
            assert_eq!(e.encode(), *p, "{name}");
        }
        Op::Pong => {
            let e = PongPayload::decode(p).expect("pong");
            assert_eq!(e.not_found, decoded["nf"].as_bool().unwrap(), "{name}");
            assert_eq!(e.err.as_deref(), decoded["e"].as_str(), "{name}");
            assert_eq!(e.t.to_string(), decoded["t"].as_str().unwrap(), "{name}");
            assert_eq!(e.encode(), *p, "{name}");
        }
        op => panic!("{name}: unexpected payload_decoded for {op}"),
    }
}

/// Decodes, checks and re-encodes one vector; returns the number of grid messages checked.
fn check_vector(name: &str, v: &Value) -> usize {
    let wire = hexb(&v["ws_payload_hex"]);
    assert_eq!(wire.len() as u64, u(&v["ws_payload_len"]), "{name}: length");
    let m = Message::decode(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_fields(name, &m, &v["fields"]);
    if m.op == Op::Merged {
        // The header alone re-encodes to the envelope's first bytes; the whole envelope is
        // re-encoded from its inner messages below.
        let header = m.to_bytes().unwrap();
        assert_eq!(
            &wire[..header.len()],
            &header[..],
            "{name}: header re-encode"
        );
    } else {
        assert_eq!(m.to_bytes().unwrap(), wire, "{name}: re-encode");
    }
    check_crc(name, v, &wire);
    if let Some(sub) = v.get("subroute_hex") {
        assert_eq!(
            m.subroute.map(|s| s.to_hex()).as_deref(),
            sub.as_str(),
            "{name}: subroute"
        );
        assert!(m.flags.contains(Flags::SUBROUTE));
    }
    if let Some(d) = v.get("payload_decoded") {
        check_payload(name, &m, d);
    }
    if let Some(inner) = v.get("merged_messages") {
        let inner = inner.as_array().expect("merged_messages array");
        let got: Vec<Message> = split_frame(wire.clone(), &Limits::default())
            .expect("split")
            .collect::<Result<_, _>>()
            .expect("inner messages decode");
        assert_eq!(got.len(), inner.len(), "{name}: inner count");
        for (i, (g, w)) in got.iter().zip(inner).enumerate() {
            let n = format!("{name}[{i}]");
            check_fields(&n, g, &w["fields"]);
            let iw = hexb(&w["ws_payload_hex"]);
            assert_eq!(g.to_bytes().unwrap(), iw, "{n}: re-encode");
            check_crc(&n, w, &iw);
        }
        assert_eq!(
            nodegrid::wire::encode_merged(&got).unwrap(),
            wire,
            "{name}: merged re-encode"
        );
        return inner.len();
    }
    1
}

#[test]
fn golden_vectors() {
    let d = data();
    let vectors = d["vectors"].as_array().expect("vectors");
    let mut checked = 0;
    for v in vectors {
        check_vector(v["name"].as_str().expect("name"), v);
        checked += 1;
    }
    assert_eq!(checked, 33, "expected 33 golden vectors");
    println!("golden vectors checked: {checked}");
}

#[test]
fn golden_transcript() {
    let d = data();
    let t = d["transcript"].as_array().expect("transcript");
    let mut checked = 0;
    for (i, v) in t.iter().enumerate() {
        assert_eq!(u(&v["index"]) as usize, i, "transcript is in order");
        check_vector(&format!("transcript[{i}]"), v);
        checked += 1;
    }
    assert_eq!(checked, 54, "expected 54 transcript messages");
    println!("transcript messages checked: {checked}");
}

#[test]
fn subroute_checks_from_meta() {
    let d = data();
    let checks = d["meta"]["subroute_checks"]
        .as_array()
        .expect("subroute_checks");
    assert!(!checks.is_empty());
    for c in checks {
        let id = SubrouteId::new(u(&c["handler"]) as u8, c["subroute"].as_str().unwrap());
        assert_eq!(id.to_hex(), c["subroute_id_hex"].as_str().unwrap());
    }
}

#[test]
fn dialing_rule_matches_meta() {
    let d = data();
    let a = d["meta"]["host_A"].as_str().unwrap();
    let b = d["meta"]["host_B"].as_str().unwrap();
    let a_dials = d["meta"]["A_dials_B"].as_bool().unwrap();
    assert_eq!(nodegrid::wire::should_dial(a, b), a_dials);
    assert_eq!(nodegrid::wire::should_dial(b, a), !a_dials);
}
