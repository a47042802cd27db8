//! split_frame on arbitrary bytes, iterating every inner message.
//!
//! Invariants checked besides "never panics":
//! * the iterator never yields more messages than announced, and stops after an error;
//! * every message that decodes re-encodes and decodes back to an equal message;
//! * the messages of a fully valid frame, re-packed with `encode_merged`, split back to the
//!   same messages.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nodegrid::wire::{encode_merged, split_frame, Limits, Message};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let Ok(frame) = split_frame(Bytes::copy_from_slice(data), &limits) else {
        return;
    };
    let announced = frame.announced();
    let merged = frame.is_merged();
    let mut msgs = Vec::new();
    let mut failed = false;
    for item in frame {
        assert!(!failed, "iterator yielded after an error");
        match item {
            Ok(m) => {
                let wire = m.to_bytes().expect("a decoded message must re-encode");
                let again = Message::decode(&wire).expect("a re-encoded message must decode");
                assert_eq!(again, m, "decode(encode(m)) != m");
                msgs.push(m);
            }
            Err(_) => failed = true,
        }
        assert!(
            msgs.len() as u64 <= u64::from(announced),
            "more messages than announced"
        );
    }
    if merged && !failed {
        assert_eq!(msgs.len() as u64, u64::from(announced));
        let env = encode_merged(&msgs).expect("valid messages must merge");
        let back: Vec<Message> = split_frame(env, &limits)
            .expect("a re-encoded envelope must split")
            .collect::<Result<_, _>>()
            .expect("re-encoded inner messages must decode");
        assert_eq!(back, msgs, "split(encode_merged(msgs)) != msgs");
    }
});
