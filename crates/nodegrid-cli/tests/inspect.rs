//! `nodegrid inspect` end to end: runs the built binary and checks exact output and exit codes.
//! Inputs are frames from `crates/nodegrid/tests/data/grid-v1.json` and PROTOCOL.md Appendix A.

use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `nodegrid inspect ARGS`, feeding `stdin` (standard input is closed when `None`).
fn inspect(args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .arg("inspect")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nodegrid");
    if let Some(data) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(data).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for nodegrid");
    Out {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn assert_ok(out: &Out, want: &str) {
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout, want);
    assert_eq!(out.code, 0);
}

fn assert_error(out: &Out, want_stderr: &str) {
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, want_stderr);
    assert_eq!(out.code, 2);
}

/// Vector `single_request` (grid-v1.json).
const SINGLE_REQUEST: &str = "970100cdea604e0e03c40a68656c6c6f206772696418267329";

const SINGLE_REQUEST_TEXT: &str = "\
message (25 bytes)
  op:       Request (14)
  flags:    0x03 [CRC,EOF]
  mux id:   1
  seq:      0
  deadline: 60000 ms (1m0s)
  handler:  78 (handlerTest)
  payload:  10 bytes, text \"hello grid\"
  subroute: none
  crc:      ok (0x29732618)
";

#[test]
fn request() {
    assert_ok(&inspect(&[SINGLE_REQUEST], None), SINGLE_REQUEST_TEXT);
}

#[test]
fn request_from_stdin_with_prefix_and_whitespace() {
    let input = b"  0x9701 00cd ea60\n4e0e03c40a68656c6c6f2067726964\t18267329\n";
    assert_ok(&inspect(&[], Some(input)), SINGLE_REQUEST_TEXT);
    // Several arguments are joined.
    assert_ok(
        &inspect(
            &[
                "97 01 00 cd ea 60 4e 0e 03",
                "c40a68656c6c6f2067726964",
                "18267329",
            ],
            None,
        ),
        SINGLE_REQUEST_TEXT,
    );
}

#[test]
fn request_from_binary_file() {
    let path = std::env::temp_dir().join(format!("nodegrid-inspect-{}.bin", std::process::id()));
    std::fs::write(&path, hex::decode(SINGLE_REQUEST).unwrap()).unwrap();
    let out = inspect(&["--file", path.to_str().unwrap()], None);
    std::fs::remove_file(&path).unwrap();
    assert_ok(&out, SINGLE_REQUEST_TEXT);
}

#[test]
fn merged_envelope() {
    // PROTOCOL.md §3.2: two single-byte requests in one envelope.
    let env = "97000200001100c400\
               c410970300cdea604e0e03c40161ea40d2f2\
               c410970400cdea604e0e03c4016246d960f4";
    let want = "\
message (45 bytes)
  op:       Merged (17)
  flags:    0x00 []
  mux id:   0
  seq:      2
  deadline: 0 (none)
  handler:  0 (none)
  payload:  none
  subroute: none
  crc:      none
  inner:    2 messages
    message 1/2 (16 bytes)
      op:       Request (14)
      flags:    0x03 [CRC,EOF]
      mux id:   3
      seq:      0
      deadline: 60000 ms (1m0s)
      handler:  78 (handlerTest)
      payload:  1 byte, text \"a\"
      subroute: none
      crc:      ok (0xf2d240ea)
    message 2/2 (16 bytes)
      op:       Request (14)
      flags:    0x03 [CRC,EOF]
      mux id:   4
      seq:      0
      deadline: 60000 ms (1m0s)
      handler:  78 (handlerTest)
      payload:  1 byte, text \"b\"
      subroute: none
      crc:      ok (0xf460d946)
";
    assert_ok(&inspect(&[env], None), want);
}

#[test]
fn merged_envelope_json() {
    let env = "97000200001100c400\
               c410970300cdea604e0e03c40161ea40d2f2\
               c410970400cdea604e0e03c4016246d960f4";
    let out = inspect(&["--json", env], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let inner = v["message"]["inner"].as_array().unwrap();
    assert_eq!(v["message"]["op_name"], "Merged");
    assert_eq!(v["message"]["seq"], 2);
    assert_eq!(inner.len(), 2);
    assert_eq!(inner[0]["mux_id"], 3);
    assert_eq!(inner[0]["payload_text"], "a");
    assert_eq!(inner[1]["mux_id"], 4);
    assert_eq!(
        inner[1]["crc"],
        json!({"status": "ok", "value": "0xf460d946"})
    );
}

#[test]
fn truncated_merged_envelope_is_an_error() {
    // The §3.2 example announcing 3 messages but holding 2.
    let env = "97000300001100c400\
               c410970300cdea604e0e03c40161ea40d2f2\
               c410970400cdea604e0e03c4016246d960f4";
    assert_error(
        &inspect(&[env], None),
        "error: invalid grid message: merged envelope announced 3 messages but holds only 2\n",
    );
}

#[test]
fn connect_request_json() {
    // Vector `connect_request`.
    let frame = "97000000000100c45184a24944c41011111111222233334444555555555555a4486f73\
                 74b5687474703a2f2f3132372e302e302e313a39313031a454696d65c70c0500000000\
                 67760225075bcd15a5546f6b656ea56465627567";
    let out = inspect(&["--json", frame], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({
            "message": {
                "size": 90,
                "op": 1,
                "op_name": "Connect",
                "flags": 0,
                "flag_names": [],
                "mux_id": 0,
                "seq": 0,
                "deadline_ms": 0,
                "handler": 0,
                "handler_name": null,
                "payload_len": 81,
                "payload_absent": false,
                "payload_hex": "84a24944c41011111111222233334444555555555555a4486f7374b568747470\
                                3a2f2f3132372e302e302e313a39313031a454696d65c70c0500000000677602",
                "payload_truncated": true,
                "decoded": {
                    "type": "connect_request",
                    "id": "11111111-2222-3333-4444-555555555555",
                    "host": "http://127.0.0.1:9101",
                    "time": "2025-01-02T03:04:05.123456789Z",
                    "token": "debug"
                },
                "subroute": null,
                "crc": {"status": "none"}
            }
        })
    );
    // --full shows the whole payload.
    let out = inspect(&["--json", "--full", frame], None);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["message"]["payload_hex"], &frame[18..]);
    assert_eq!(v["message"].get("payload_truncated"), None);
}

#[test]
fn masked_ws_frame() {
    // Vector `single_request_subroute`, as the dialer sends it (masked with key 01020304).
    let frame = "82b801020304960103c9eb624d0a22c60a777460236c646e6f6b4f027aecf90c569a4149\
                 cc620d4af0562a65a8adfe1687b4377c1949dff5401934cb5b33";
    let want = "\
websocket: binary frame (opcode 2), masked with key 01020304, header 6 bytes, payload 56 bytes
message (56 bytes)
  op:       Request (14)
  flags:    0x23 [CRC,EOF,SUBROUTE]
  mux id:   3
  seq:      0
  deadline: 60000 ms (1m0s)
  handler:  78 (handlerTest)
  payload:  9 bytes, text \"sub hello\"
  subroute: 4e0079e8f80e559e404bcf660c48f3522b67aba9ff1484b0367e1a4ddef7431d
  crc:      ok (0x3758c935)
";
    assert_ok(&inspect(&["--ws", frame], None), want);
}

#[test]
fn unmasked_ws_frame_json() {
    // Vector `single_request`, as the acceptor sends it (unmasked).
    let frame = "8219970100cdea604e0e03c40a68656c6c6f206772696418267329";
    let out = inspect(&["--ws", "--json", frame], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["websocket"],
        json!({
            "fin": true, "rsv": 0, "opcode": 2, "opcode_name": "binary", "masked": false,
            "header_len": 2, "payload_len": 25
        })
    );
    assert_eq!(v["message"]["payload_text"], "hello grid");
}

#[test]
fn bad_ws_frames() {
    assert_error(
        &inspect(&["--ws", "82"], None),
        "error: truncated WebSocket frame: header needs 2 bytes, got 1\n",
    );
    assert_error(
        &inspect(&["--ws", "8219970100"], None),
        "error: WebSocket frame announces a 25-byte payload but 3 byte(s) follow its header\n",
    );
    assert_error(
        &inspect(&["--ws", "8900"], None),
        "error: WebSocket frame is a ping control frame (opcode 0x9), not a data frame\n",
    );
    assert_error(
        &inspect(&["--ws", "8200"], None),
        "error: the WebSocket frame has an empty payload\n",
    );
}

#[test]
fn pongs_and_pings_are_decoded() {
    // Vector `conn_ping` (MuxID 0) and `mux_pong_not_found` (MuxID ≠ 0).
    let out = inspect(
        &[
            "--json",
            "970000cd2710000300c41281a174c70c050000000067760225075bcd15",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["message"]["decoded"],
        json!({"type": "ping", "t": "2025-01-02T03:04:05.123456789Z"})
    );
    let want = "\
message (38 bytes)
  op:       Pong (4)
  flags:    0x01 [CRC]
  mux id:   8
  seq:      1
  deadline: 0 (none)
  handler:  0 (none)
  payload:  25 bytes, hex 83a26e66c2a165c0a174c70c05fffffff1886e090000000000
  decoded:  pong
    nf:       false
    e:        nil
    t:        0001-01-01T00:00:00Z
  subroute: none
  crc:      ok (0xa883ad6c)
";
    assert_ok(
        &inspect(
            &["97080100000401c41983a26e66c2a165c0a174c70c05fffffff1886e0900000000006cad83a8"],
            None,
        ),
        want,
    );
}

#[test]
fn mux_connect_error_is_decoded() {
    // A MuxConnectError carrying PROTOCOL.md Appendix A's error map, no CRC.
    let frame = "97030000460600c41781a54572726f72af496e76616c69642048616e646c6572";
    let out = inspect(&["--json", frame], None);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["message"]["handler_name"], "WriteAll");
    assert_eq!(
        v["message"]["decoded"],
        json!({"type": "mux_connect_error", "error": "Invalid Handler"})
    );
}

#[test]
fn bad_crc() {
    // `single_request` with the CRC trailer's first byte changed from 0x18 to 0x19.
    let frame = "970100cdea604e0e03c40a68656c6c6f206772696419267329";
    let out = inspect(&[frame], None);
    assert_eq!(out.stderr, "");
    assert_eq!(
        out.stdout,
        SINGLE_REQUEST_TEXT.replace(
            "crc:      ok (0x29732618)",
            "crc:      BAD (trailer 0x29732619, computed 0x29732618)"
        )
    );
    assert_eq!(out.code, 1);

    let out = inspect(&["--json", frame], None);
    assert_eq!(out.code, 1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["message"]["crc"],
        json!({"status": "bad", "received": "0x29732619", "computed": "0x29732618"})
    );
}

#[test]
fn bad_crc_inside_merged_envelope() {
    // The second inner message's CRC is wrong; the envelope is still shown, exit code 1.
    let env = "97000200001100c400\
               c410970300cdea604e0e03c40161ea40d2f2\
               c410970400cdea604e0e03c4016246d960f5";
    let out = inspect(&["--json", env], None);
    assert_eq!(out.code, 1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let inner = &v["message"]["inner"];
    assert_eq!(inner[0]["crc"]["status"], "ok");
    assert_eq!(
        inner[1]["crc"],
        json!({"status": "bad", "received": "0xf560d946", "computed": "0xf460d946"})
    );
}

#[test]
fn garbage_hex() {
    assert_error(
        &inspect(&["97zz"], None),
        "error: invalid hex: unexpected character 'z' at offset 2\n",
    );
    assert_error(
        &inspect(&["0x970"], None),
        "error: invalid hex: odd number of digits (3)\n",
    );
}

#[test]
fn garbage_bytes() {
    assert_error(
        &inspect(&["960100cdea604e0e"], None),
        "error: invalid grid message: message tuple has 6 elements, expected 7\n",
    );
    // Appendix A negative vector: payload encoded as nil.
    assert_error(
        &inspect(&["970100cdea604e0e03c0"], None),
        "error: invalid grid message: Payload: unexpected MessagePack type byte 0xc0 at offset 9\n",
    );
    assert_error(
        &inspect(&["deadbeef"], None),
        "error: invalid grid message: message tuple: unexpected MessagePack type byte 0xde at offset 0\n",
    );
}

#[test]
fn empty_input() {
    assert_error(&inspect(&[], Some(b"")), "error: empty input\n");
    assert_error(&inspect(&[], Some(b" \n\t")), "error: empty input\n");
    assert_error(&inspect(&[""], None), "error: empty input\n");
}

#[test]
fn missing_file() {
    let out = inspect(&["--file", "/nonexistent/nodegrid-frame.bin"], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: cannot read /nonexistent/nodegrid-frame.bin: "),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
}
