//! Property tests of the wire codec: round trips, no panics on arbitrary input, CRC detection.

use bytes::Bytes;
use nodegrid::wire::{
    encode_merged, split_frame, ConnectRequest, ConnectResponse, Flags, Limits, Message,
    MuxConnectErrorPayload, Op, PingPayload, PongPayload, SubrouteId,
};
use proptest::prelude::*;

fn arb_message() -> impl Strategy<Value = Message> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::option::of(any::<[u8; 32]>()),
    )
        .prop_map(|(mux, seq, dl, h, op, flags, payload, sub)| Message {
            mux_id: mux,
            seq,
            deadline_ms: dl,
            handler: h,
            op: Op::from_u8(op),
            // The SUBROUTE bit is derived from `subroute` when encoding.
            flags: Flags(flags).without(Flags::SUBROUTE)
                | if sub.is_some() {
                    Flags::SUBROUTE
                } else {
                    Flags::NONE
                },
            payload: Bytes::from(payload),
            subroute: sub.map(SubrouteId),
        })
}

proptest! {
    #[test]
    fn any_message_roundtrips(m in arb_message()) {
        let wire = m.to_bytes().unwrap();
        prop_assert_eq!(wire.len(), m.encoded_len());
        let d = Message::decode(&wire).unwrap();
        prop_assert_eq!(&d, &m);
        prop_assert_eq!(d.to_bytes().unwrap(), wire);
    }

    #[test]
    fn merged_roundtrips(msgs in proptest::collection::vec(arb_message(), 0..20)) {
        let env = encode_merged(&msgs).unwrap();
        let got: Vec<Message> = split_frame(env, &Limits::default()).unwrap()
            .collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let b = Bytes::from(data);
        let _ = Message::decode(&b);
        if let Ok(it) = split_frame(b.clone(), &Limits::default()) {
            for m in it.take(1000) { let _ = m; }
        }
        let _ = ConnectRequest::decode(&b);
        let _ = ConnectResponse::decode(&b);
        let _ = PingPayload::decode(&b);
        let _ = PongPayload::decode(&b);
        let _ = MuxConnectErrorPayload::decode(&b);
    }

    #[test]
    fn tuple_prefixed_garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        // Start with a plausible header so the fuzzing reaches deeper code paths.
        let mut v = vec![0x97u8];
        v.extend_from_slice(&tail);
        let b = Bytes::from(v);
        let _ = Message::decode(&b);
        if let Ok(it) = split_frame(b, &Limits::default()) {
            for m in it.take(1000) { let _ = m; }
        }
    }

    #[test]
    fn flipped_bit_in_crc_message_is_detected(m in arb_message(), bit in any::<usize>()) {
        let mut m = m;
        // Flags below 0x80 encode as a single fixint byte whose position we can compute.
        m.flags = Flags(m.flags.0 & 0x7f) | Flags::CRC;
        let wire = m.to_bytes().unwrap();
        let mut flags_pos = 1;
        for v in [m.mux_id, m.seq as u64, m.deadline_ms as u64, m.handler as u64, m.op.as_u8() as u64] {
            let mut tmp = Vec::new();
            rmp_like_uint(&mut tmp, v);
            flags_pos += tmp.len();
        }
        let bit = bit % (wire.len() * 8);
        // Clearing the CRC flag itself turns the trailer into ignored trailing bytes; that one
        // bit cannot be protected by the checksum it announces.
        prop_assume!(!(bit / 8 == flags_pos && bit % 8 == 0));
        let mut bad = wire.to_vec();
        bad[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Message::decode(&Bytes::from(bad)).is_err(), "flip of bit {} undetected", bit);
    }
}

fn rmp_like_uint(out: &mut Vec<u8>, v: u64) {
    let n = match v {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    };
    out.extend(std::iter::repeat_n(0, n));
}
