//! Captured log lines as the diagnostics tests compare them: WARN lines only, with the source
//! ports of incoming connections (which a test cannot know) masked.
#![allow(dead_code)]

use super::common::Logs;

/// The WARN line a connection logs for `text`.
pub fn conn_warn(text: &str, local: &str, remote: &str) -> String {
    format!(" WARN nodegrid::api::connection: {text} local={local} remote={remote} suppressed=0")
}

/// Replaces the port of every `127.0.0.1:<port>` that follows `from `, `with ` or `peer=`
/// (a dialer's source port, which the test cannot know) by `PORT`.
pub fn mask_source_ports(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("127.0.0.1:") {
        let (head, tail) = rest.split_at(i + "127.0.0.1:".len());
        out.push_str(head);
        let source = ["from ", "with ", "peer="]
            .iter()
            .any(|p| head[..i].ends_with(p));
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if source && digits > 0 {
            out.push_str("PORT");
            rest = &tail[digits..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// The captured WARN lines that contain every one of `needles`, source ports masked. The
/// capture is shared by the tests of a binary running in parallel: include something unique
/// to the test (a host string) among the needles.
pub fn warns(logs: &Logs, needles: &[&str]) -> Vec<String> {
    logs.lines()
        .into_iter()
        .filter(|l| l.starts_with(" WARN") || l.starts_with("WARN"))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(|l| mask_source_ports(&l))
        .collect()
}
