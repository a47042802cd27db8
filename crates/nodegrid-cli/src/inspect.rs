//! `nodegrid inspect`: decode one grid message (or merged envelope, or a WebSocket frame
//! carrying one) and print every field, as text or as JSON.
//!
//! Exit codes: 0 = decoded and every CRC present is correct; 1 = decoded, but at least one CRC
//! trailer is wrong (the messages are still printed, marked `bad`); 2 = the input could not be
//! decoded (one `error: …` line on stderr, nothing on stdout).

use bytes::Bytes;
use clap::Args;
use nodegrid::wire::{
    crc32_of, go_duration_string, ConnectRequest, ConnectResponse, DecodeError, Flags, GridTime,
    Message, MuxConnectErrorPayload, Op, PingPayload, PongPayload, CRC_LEN, SUBROUTE_LEN,
};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Payload bytes shown as hex before truncating (without `--full`).
const HEX_PREVIEW: usize = 64;
/// Payload characters shown as text before truncating (without `--full`).
const TEXT_PREVIEW: usize = 120;
/// Merged envelopes nested deeper than this are not expanded (a hostile input could nest
/// thousands of levels).
const MAX_DEPTH: usize = 8;

/// Arguments of `nodegrid inspect`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 = decoded, all CRCs ok; 1 = decoded, some CRC bad; \
                        2 = input could not be decoded."
)]
pub struct InspectArgs {
    /// The message as hex (whitespace and a leading 0x are ignored; several arguments are
    /// joined). Read from standard input when absent and no --file is given.
    #[arg(value_name = "HEX", conflicts_with = "file")]
    hex: Vec<String>,
    /// Read the raw (binary) bytes from this file instead.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// The input is a whole WebSocket frame (RFC 6455 header, masked or not), not just its
    /// payload.
    #[arg(long)]
    ws: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Show whole payloads instead of a preview.
    #[arg(long)]
    full: bool,
}

/// Runs the subcommand.
pub fn run(args: InspectArgs) -> Result<ExitCode, String> {
    let raw = read_input(&args)?;
    let (ws, data) = if args.ws {
        let (info, payload) = parse_ws_frame(&raw)?;
        (Some(info), payload)
    } else {
        (None, raw)
    };
    if data.is_empty() {
        return Err(if ws.is_some() {
            "the WebSocket frame has an empty payload".into()
        } else {
            "empty input".into()
        });
    }
    let opts = Opts { full: args.full };
    let message = inspect_message(Bytes::from(data), 0, &opts)
        .map_err(|e| format!("invalid grid message: {e}"))?;
    let all_ok = message.crc_ok_recursive();
    let report = Report {
        websocket: ws,
        message,
    };
    let out = if args.json {
        let mut s = serde_json::to_string_pretty(&report)
            .map_err(|e| format!("cannot serialize the report: {e}"))?;
        s.push('\n');
        s
    } else {
        render_text(&report)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to standard output: {e}"))?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

struct Opts {
    full: bool,
}

// ---------------------------------------------------------------------------------------------
// Input

fn read_input(args: &InspectArgs) -> Result<Vec<u8>, String> {
    if let Some(path) = &args.file {
        return std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    let text = if args.hex.is_empty() {
        let mut s = Vec::new();
        std::io::stdin()
            .read_to_end(&mut s)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        String::from_utf8(s)
            .map_err(|_| "standard input is not hex text (use --file for binary input)")?
    } else {
        args.hex.join(" ")
    };
    parse_hex(&text)
}

/// Parses hex, ignoring whitespace and one leading `0x`/`0X`.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim_start();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let mut out = Vec::with_capacity(t.len() / 2);
    let mut high: Option<u8> = None;
    let mut digits = 0usize;
    for (i, c) in t.char_indices() {
        if c.is_whitespace() {
            continue;
        }
        let v = c.to_digit(16).ok_or_else(|| {
            let pos = text.len() - t.len() + i;
            format!("invalid hex: unexpected character {c:?} at offset {pos}")
        })? as u8;
        digits += 1;
        match high.take() {
            None => high = Some(v),
            Some(h) => out.push(h << 4 | v),
        }
    }
    if high.is_some() {
        return Err(format!("invalid hex: odd number of digits ({digits})"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// WebSocket frame (RFC 6455 §5.2)

/// The header of a WebSocket frame given with `--ws`.
#[derive(Debug, Serialize)]
struct WsInfo {
    fin: bool,
    rsv: u8,
    opcode: u8,
    opcode_name: &'static str,
    masked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mask_key: Option<String>,
    header_len: usize,
    payload_len: u64,
}

fn ws_opcode_name(op: u8) -> &'static str {
    match op {
        0x0 => "continuation",
        0x1 => "text",
        0x2 => "binary",
        0x8 => "close",
        0x9 => "ping",
        0xa => "pong",
        _ => "reserved",
    }
}

fn parse_ws_frame(frame: &[u8]) -> Result<(WsInfo, Vec<u8>), String> {
    let short = |need: usize| {
        format!(
            "truncated WebSocket frame: header needs {need} bytes, got {}",
            frame.len()
        )
    };
    if frame.len() < 2 {
        return Err(short(2));
    }
    let (b0, b1) = (frame[0], frame[1]);
    let opcode = b0 & 0x0f;
    let masked = b1 & 0x80 != 0;
    let mut pos = 2usize;
    let len = match b1 & 0x7f {
        126 => {
            let b = frame.get(2..4).ok_or_else(|| short(4))?;
            pos = 4;
            u64::from(u16::from_be_bytes([b[0], b[1]]))
        }
        127 => {
            let b = frame.get(2..10).ok_or_else(|| short(10))?;
            pos = 10;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        }
        n => u64::from(n),
    };
    let key = if masked {
        let b = frame.get(pos..pos + 4).ok_or_else(|| short(pos + 4))?;
        pos += 4;
        Some([b[0], b[1], b[2], b[3]])
    } else {
        None
    };
    let have = (frame.len() - pos) as u64;
    if have != len {
        return Err(format!(
            "WebSocket frame announces a {len}-byte payload but {have} byte(s) follow its header"
        ));
    }
    if opcode & 0x08 != 0 {
        return Err(format!(
            "WebSocket frame is a {} control frame (opcode {opcode:#x}), not a data frame",
            ws_opcode_name(opcode)
        ));
    }
    let mut payload = frame[pos..].to_vec();
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    let info = WsInfo {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode,
        opcode_name: ws_opcode_name(opcode),
        masked,
        mask_key: key.map(hex::encode),
        header_len: pos,
        payload_len: len,
    };
    Ok((info, payload))
}

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Debug, Serialize)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    websocket: Option<WsInfo>,
    message: MessageReport,
}

#[derive(Debug, Serialize)]
struct MessageReport {
    /// Encoded size of the message, trailers included.
    size: usize,
    op: u8,
    op_name: String,
    flags: u8,
    flag_names: Vec<String>,
    mux_id: u64,
    seq: u32,
    deadline_ms: u32,
    handler: u8,
    handler_name: Option<&'static str>,
    payload_len: usize,
    /// Zero length without the ZERO flag: no payload at all (PROTOCOL.md §3.7).
    payload_absent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_hex: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    payload_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    decoded: Option<Decoded>,
    subroute: Option<String>,
    crc: Crc,
    /// Bytes between the tuple and the trailers that the receiver ignores (not for envelopes).
    #[serde(skip_serializing_if = "is_zero")]
    ignored_bytes: usize,
    /// The inner messages of a merged envelope.
    #[serde(skip_serializing_if = "Option::is_none")]
    inner: Option<Vec<MessageReport>>,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl MessageReport {
    fn crc_ok_recursive(&self) -> bool {
        !matches!(self.crc, Crc::Bad { .. })
            && self
                .inner
                .iter()
                .flatten()
                .all(MessageReport::crc_ok_recursive)
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Crc {
    None,
    Ok { value: String },
    Bad { received: String, computed: String },
}

/// A decoded connection-level payload.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Decoded {
    ConnectRequest {
        id: String,
        host: String,
        time: String,
        token: String,
    },
    ConnectResponse {
        id: String,
        accepted: bool,
        rejected_reason: String,
    },
    Ping {
        t: String,
    },
    Pong {
        not_found: bool,
        err: Option<String>,
        t: String,
    },
    MuxConnectError {
        error: String,
    },
    /// The payload should have been one of the above but does not decode.
    Invalid {
        error: String,
    },
}

fn uuid(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn time(t: GridTime) -> String {
    t.to_string()
}

fn decode_payload(m: &Message) -> Option<Decoded> {
    let p = m.payload_opt()?;
    let res = match m.op {
        Op::Connect => ConnectRequest::decode(p).map(|v| Decoded::ConnectRequest {
            id: uuid(&v.id),
            host: v.host,
            time: time(v.time),
            token: v.token,
        }),
        Op::ConnectResponse => ConnectResponse::decode(p).map(|v| Decoded::ConnectResponse {
            id: uuid(&v.id),
            accepted: v.accepted,
            rejected_reason: v.rejected_reason,
        }),
        // Only connection pings carry a map; a mux ping's payload (normally none) is opaque.
        Op::Ping if m.mux_id == 0 => PingPayload::decode(p).map(|v| Decoded::Ping { t: time(v.t) }),
        Op::Pong => PongPayload::decode(p).map(|v| Decoded::Pong {
            not_found: v.not_found,
            err: v.err,
            t: time(v.t),
        }),
        Op::MuxConnectError => {
            MuxConnectErrorPayload::decode(p).map(|v| Decoded::MuxConnectError { error: v.error })
        }
        _ => return None,
    };
    Some(res.unwrap_or_else(|e| Decoded::Invalid {
        error: e.to_string(),
    }))
}

/// The reference's name of a handler ID (PROTOCOL.md Appendix C), from the library's table;
/// `None` for 0 (no handler) and IDs beyond the reference's range.
fn handler_name(h: u8) -> Option<&'static str> {
    match nodegrid::handler::handler_name(h) {
        std::borrow::Cow::Borrowed(n) if (1..80).contains(&h) => Some(n),
        _ => None,
    }
}

/// Text if the payload is UTF-8 without control characters (tab, CR and LF allowed).
fn printable_text(p: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(p).ok()?;
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .then_some(s)
}

/// Decodes `buf` as one grid message (recursing into a merged envelope).
fn inspect_message(buf: Bytes, depth: usize, opts: &Opts) -> Result<MessageReport, String> {
    let (m, crc) = match Message::decode(&buf) {
        Ok(m) => {
            let crc = if m.flags.contains(Flags::CRC) {
                // decode() verified it; recompute anyway so "ok" is our own finding.
                let (computed, received) = crc_of(&buf)?;
                if computed != received {
                    return Err(format!(
                        "internal error: decoder accepted CRC 0x{received:08x}, computed 0x{computed:08x}"
                    ));
                }
                Crc::Ok {
                    value: format!("0x{computed:08x}"),
                }
            } else {
                Crc::None
            };
            (m, crc)
        }
        Err(DecodeError::CrcMismatch { computed, received }) => {
            // Everything but the CRC decoded; decode a copy with a corrected trailer to show it.
            let mut fixed = buf.to_vec();
            let at = fixed.len() - CRC_LEN;
            fixed[at..].copy_from_slice(&computed.to_le_bytes());
            let m = Message::decode(&Bytes::from(fixed)).map_err(|e| e.to_string())?;
            let crc = Crc::Bad {
                received: format!("0x{received:08x}"),
                computed: format!("0x{computed:08x}"),
            };
            (m, crc)
        }
        Err(e) => return Err(e.to_string()),
    };

    let layout = Layout::of(&buf, m.flags)?;
    let payload_absent = m.payload_opt().is_none();
    let (mut payload_text, mut payload_hex, mut payload_truncated) = (None, None, false);
    if !m.payload.is_empty() {
        if let Some(s) = printable_text(&m.payload) {
            let n = s.chars().count();
            if opts.full || n <= TEXT_PREVIEW {
                payload_text = Some(s.to_owned());
            } else {
                payload_text = Some(s.chars().take(TEXT_PREVIEW).collect());
                payload_truncated = true;
            }
        } else if opts.full || m.payload.len() <= HEX_PREVIEW {
            payload_hex = Some(hex::encode(&m.payload));
        } else {
            payload_hex = Some(hex::encode(&m.payload[..HEX_PREVIEW]));
            payload_truncated = true;
        }
    }

    let (inner, ignored_bytes) = if m.op == Op::Merged {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "merged envelopes nested deeper than {MAX_DEPTH} levels"
            ));
        }
        let items = split_items(&buf, layout.body.clone(), m.seq)?;
        let mut inner = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let r = inspect_message(item, depth + 1, opts)
                .map_err(|e| format!("merged item {} of {}: {e}", i + 1, m.seq))?;
            inner.push(r);
        }
        (Some(inner), 0)
    } else {
        (None, layout.body.len())
    };

    Ok(MessageReport {
        size: buf.len(),
        op: m.op.as_u8(),
        op_name: m.op.name().into_owned(),
        flags: m.flags.0,
        flag_names: m.flags.names(),
        mux_id: m.mux_id,
        seq: m.seq,
        deadline_ms: m.deadline_ms,
        handler: m.handler,
        handler_name: handler_name(m.handler),
        payload_len: m.payload.len(),
        payload_absent,
        payload_text,
        payload_hex,
        payload_truncated,
        decoded: decode_payload(&m),
        subroute: m.subroute.map(|s| s.to_hex()),
        crc,
        ignored_bytes,
        inner,
    })
}

/// Recomputes the CRC of a message whose CRC flag is set: (computed, received).
fn crc_of(buf: &[u8]) -> Result<(u32, u32), String> {
    let at = buf
        .len()
        .checked_sub(CRC_LEN)
        .ok_or("message too short for its CRC trailer")?;
    let mut t = [0u8; CRC_LEN];
    t.copy_from_slice(&buf[at..]);
    Ok((crc32_of(&buf[..at]), u32::from_le_bytes(t)))
}

/// Where the parts of an already-decoded message lie: the bytes after the tuple and before the
/// trailers (the inner items of an envelope, ignored bytes otherwise).
struct Layout {
    body: std::ops::Range<usize>,
}

impl Layout {
    fn of(buf: &[u8], flags: Flags) -> Result<Layout, String> {
        let mut r = Cursor { buf, pos: 0 };
        let b = r.byte()?;
        match b {
            0x90..=0x9f => {}
            0xdc => r.skip(2)?,
            0xdd => r.skip(4)?,
            _ => return Err(format!("unexpected array header 0x{b:02x}")),
        }
        for _ in 0..6 {
            let b = r.byte()?;
            match b {
                0x00..=0x7f => {}
                0xcc | 0xd0 => r.skip(1)?,
                0xcd | 0xd1 => r.skip(2)?,
                0xce | 0xd2 => r.skip(4)?,
                0xcf | 0xd3 => r.skip(8)?,
                _ => return Err(format!("unexpected integer type 0x{b:02x}")),
            }
        }
        let len = r.bin_len()?;
        r.skip(len)?;
        let mut trailers = 0;
        if flags.contains(Flags::CRC) {
            trailers += CRC_LEN;
        }
        if flags.contains(Flags::SUBROUTE) {
            trailers += SUBROUTE_LEN;
        }
        let end = buf
            .len()
            .checked_sub(trailers)
            .filter(|&e| e >= r.pos)
            .ok_or("message too short for its trailers")?;
        Ok(Layout { body: r.pos..end })
    }
}

/// The `count` bin items of a merged envelope's body.
fn split_items(
    buf: &Bytes,
    body: std::ops::Range<usize>,
    count: u32,
) -> Result<Vec<Bytes>, String> {
    let mut r = Cursor {
        buf: &buf[..body.end],
        pos: body.start,
    };
    // Every item takes at least 2 bytes; do not trust `count` for the allocation.
    let mut items = Vec::with_capacity((count as usize).min(body.len() / 2));
    for found in 0..count {
        let truncated = || {
            DecodeError::MergedTruncated {
                announced: count,
                found,
            }
            .to_string()
        };
        let len = r.bin_len().map_err(|_| truncated())?;
        let start = r.pos;
        r.skip(len).map_err(|_| truncated())?;
        items.push(buf.slice(start..r.pos));
    }
    Ok(items)
}

/// A bounds-checked reader over the framing bytes of a message.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated input")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.take(n).map(|_| ())
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn bin_len(&mut self) -> Result<usize, String> {
        let b = self.byte()?;
        let n = match b {
            0xc4 => 1,
            0xc5 => 2,
            0xc6 => 4,
            _ => return Err(format!("expected a MessagePack bin, found 0x{b:02x}")),
        };
        Ok(self
            .take(n)?
            .iter()
            .fold(0usize, |a, &x| a << 8 | x as usize))
    }
}

// ---------------------------------------------------------------------------------------------
// Text output

fn render_text(r: &Report) -> String {
    let mut out = String::new();
    if let Some(ws) = &r.websocket {
        let mut line = format!("websocket: {} frame (opcode {})", ws.opcode_name, ws.opcode);
        if !ws.fin {
            line.push_str(", not FIN");
        }
        if ws.rsv != 0 {
            let _ = write!(line, ", RSV bits {:#x}", ws.rsv);
        }
        match &ws.mask_key {
            Some(k) => {
                let _ = write!(line, ", masked with key {k}");
            }
            None => line.push_str(", unmasked"),
        }
        let _ = writeln!(
            out,
            "{line}, header {}, payload {} bytes",
            plural(ws.header_len, "byte"),
            ws.payload_len
        );
    }
    render_message(&mut out, &r.message, 0, "message");
    out
}

fn field(out: &mut String, indent: usize, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "{:indent$}{:<10}{}",
        "",
        format!("{label}:"),
        value,
        indent = indent
    );
}

fn render_message(out: &mut String, m: &MessageReport, indent: usize, title: &str) {
    let _ = writeln!(out, "{:indent$}{title} ({})", "", plural(m.size, "byte"));
    let ind = indent + 2;
    field(out, ind, "op", format!("{} ({})", m.op_name, m.op));
    let names = m.flag_names.join(",");
    field(out, ind, "flags", format!("0x{:02x} [{names}]", m.flags));
    field(out, ind, "mux id", m.mux_id);
    field(out, ind, "seq", m.seq);
    let deadline = if m.deadline_ms == 0 {
        "0 (none)".to_string()
    } else {
        format!(
            "{} ms ({})",
            m.deadline_ms,
            go_duration_string(i128::from(m.deadline_ms) * 1_000_000)
        )
    };
    field(out, ind, "deadline", deadline);
    let handler = match m.handler_name {
        Some(n) => format!("{} ({n})", m.handler),
        None if m.handler == 0 => "0 (none)".to_string(),
        None => format!("{} (unknown)", m.handler),
    };
    field(out, ind, "handler", handler);
    let more = if m.payload_truncated {
        " … (truncated, --full shows all)"
    } else {
        ""
    };
    let payload = if m.payload_absent {
        "none".to_string()
    } else if m.payload_len == 0 {
        "empty (ZERO)".to_string()
    } else if let Some(t) = &m.payload_text {
        format!("{}, text {t:?}{more}", plural(m.payload_len, "byte"))
    } else {
        let h = m.payload_hex.as_deref().unwrap_or_default();
        format!("{}, hex {h}{more}", plural(m.payload_len, "byte"))
    };
    field(out, ind, "payload", payload);
    if let Some(d) = &m.decoded {
        render_decoded(out, ind, d);
    }
    field(
        out,
        ind,
        "subroute",
        m.subroute.as_deref().unwrap_or("none"),
    );
    let crc = match &m.crc {
        Crc::None => "none".to_string(),
        Crc::Ok { value } => format!("ok ({value})"),
        Crc::Bad { received, computed } => {
            format!("BAD (trailer {received}, computed {computed})")
        }
    };
    field(out, ind, "crc", crc);
    if m.ignored_bytes != 0 {
        field(
            out,
            ind,
            "ignored",
            format!(
                "{} between tuple and trailers",
                plural(m.ignored_bytes, "byte")
            ),
        );
    }
    if let Some(inner) = &m.inner {
        field(out, ind, "inner", plural(inner.len(), "message"));
        for (i, im) in inner.iter().enumerate() {
            let title = format!("message {}/{}", i + 1, inner.len());
            render_message(out, im, ind + 2, &title);
        }
    }
}

fn plural(n: usize, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn render_decoded(out: &mut String, indent: usize, d: &Decoded) {
    let sub = indent + 2;
    match d {
        Decoded::ConnectRequest {
            id,
            host,
            time,
            token,
        } => {
            field(out, indent, "decoded", "connect request");
            field(out, sub, "id", id);
            field(out, sub, "host", format!("{host:?}"));
            field(out, sub, "time", time);
            field(out, sub, "token", format!("{token:?}"));
        }
        Decoded::ConnectResponse {
            id,
            accepted,
            rejected_reason,
        } => {
            field(out, indent, "decoded", "connect response");
            field(out, sub, "id", id);
            field(out, sub, "accepted", accepted);
            field(out, sub, "reason", format!("{rejected_reason:?}"));
        }
        Decoded::Ping { t } => {
            field(out, indent, "decoded", "ping");
            field(out, sub, "t", t);
        }
        Decoded::Pong { not_found, err, t } => {
            field(out, indent, "decoded", "pong");
            field(out, sub, "nf", not_found);
            field(
                out,
                sub,
                "e",
                err.as_ref().map_or("nil".to_string(), |e| format!("{e:?}")),
            );
            field(out, sub, "t", t);
        }
        Decoded::MuxConnectError { error } => {
            field(out, indent, "decoded", "mux connect error");
            field(out, sub, "error", format!("{error:?}"));
        }
        Decoded::Invalid { error } => {
            field(out, indent, "decoded", format!("invalid payload: {error}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex(" 0x97 01\n0a ").unwrap(), vec![0x97, 0x01, 0x0a]);
        assert_eq!(parse_hex("0XAB").unwrap(), vec![0xab]);
        assert_eq!(
            parse_hex("97 0g").unwrap_err(),
            "invalid hex: unexpected character 'g' at offset 4"
        );
        assert_eq!(
            parse_hex("970").unwrap_err(),
            "invalid hex: odd number of digits (3)"
        );
        assert_eq!(parse_hex("  ").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn ws_lengths() {
        // 16-bit length, unmasked.
        let mut f = vec![0x82, 126, 0x00, 0x80];
        f.extend(std::iter::repeat_n(7u8, 128));
        let (info, p) = parse_ws_frame(&f).unwrap();
        assert_eq!((info.header_len, info.payload_len, p.len()), (4, 128, 128));
        assert!(parse_ws_frame(&f[..100]).is_err());
        assert!(parse_ws_frame(&[0x82]).is_err());
        assert!(parse_ws_frame(&[0x89, 0x00]).is_err());
    }

    /// Every truncation and many single-byte changes of a few valid frames: the inspector
    /// returns a report or an error, never panics, and both renderers accept every report.
    #[test]
    fn never_panics_on_mutated_frames() {
        let frames = [
            // merged envelope of two requests (§3.2)
            "97000200001100c400c410970300cdea604e0e03c40161ea40d2f2c410970400cdea604e0e03c4016246d960f4",
            // request with subroute and CRC (Appendix A)
            "970200cdea60090e23c400090068a20278845970f171889948ea7b834d159665fefae4dc509b0f598672ce3380930d",
            // connection pong with CRC (Appendix A)
            "970000cd2710000401c41983a26e66c2a165c0a174c70c05000000006553f10000000005c780ab6f",
            // connect response (grid-v1.json connect_response_accepted payload in a tuple)
            "97000000000200c43083a24944c410000102030405060708090a0b0c0d0e0fa8416363657074656\
             4c3ae52656a6563746564526561736f6ea0",
        ];
        let opts = Opts { full: false };
        let mut reports = 0;
        for f in frames {
            let base = parse_hex(f).unwrap();
            let mut inputs: Vec<Vec<u8>> = (0..base.len()).map(|n| base[..n].to_vec()).collect();
            for i in 0..base.len() {
                for v in [0x00, 0x01, 0x7f, 0x80, 0x97, 0xc4, 0xc6, 0xcf, 0xdd, 0xff] {
                    let mut m = base.clone();
                    m[i] = v;
                    inputs.push(m);
                }
                let mut m = base.clone();
                m[i] ^= 0x20;
                inputs.push(m);
            }
            for input in inputs {
                if let Ok(message) = inspect_message(Bytes::from(input), 0, &opts) {
                    let r = Report {
                        websocket: None,
                        message,
                    };
                    assert!(!render_text(&r).is_empty());
                    assert!(serde_json::to_string(&r).is_ok());
                    reports += 1;
                }
            }
        }
        assert!(reports > 100, "only {reports} mutated frames decoded");
    }

    #[test]
    fn handler_names_match_appendix_c() {
        assert_eq!(handler_name(0), None);
        assert_eq!(handler_name(1), Some("LockLock"));
        assert_eq!(handler_name(40), Some("MakeBucket"));
        assert_eq!(handler_name(70), Some("WriteAll"));
        assert_eq!(handler_name(79), Some("handlerTest2"));
        assert_eq!(handler_name(80), None);
    }
}
