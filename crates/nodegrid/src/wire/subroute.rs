//! Subroute IDs (PROTOCOL.md §3.6a): a 32-byte route tag that lets several handlers share one
//! handler ID (MinIO uses the drive path).

use super::ids::HandlerId;
use sha2::{Digest, Sha256};

/// Length of the subroute trailer.
pub const SUBROUTE_LEN: usize = 32;

/// A 32-byte subroute ID: SHA-256 of the subroute string with byte 0 = handler ID, byte 1 = 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubrouteId(pub [u8; SUBROUTE_LEN]);

impl SubrouteId {
    /// Derives the ID of `subroute` for `handler`.
    ///
    /// ```
    /// use nodegrid::wire::SubrouteId;
    /// let id = SubrouteId::new(9, "mysub");
    /// assert_eq!(id.to_hex(), "090068a20278845970f171889948ea7b834d159665fefae4dc509b0f598672ce");
    /// ```
    pub fn new(handler: HandlerId, subroute: &str) -> SubrouteId {
        let mut id: [u8; SUBROUTE_LEN] = Sha256::digest(subroute.as_bytes()).into();
        id[0] = handler;
        id[1] = 0;
        SubrouteId(id)
    }

    /// The handler ID stored in byte 0.
    pub fn handler(&self) -> HandlerId {
        self.0[0]
    }

    /// Lower-case hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The reference's text for an unknown subrouted handler: `[b0 b1 … b31]` in decimal.
    pub fn to_go_bytes_string(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|b| b.to_string()).collect();
        format!("[{}]", parts.join(" "))
    }
}

impl std::fmt::Debug for SubrouteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SubrouteId({})", self.to_hex())
    }
}

/// Joins subroute parts with `/` as the reference does (`subroute` + `1` → `subroute/1`).
pub fn join_subroute<S: AsRef<str>>(parts: &[S]) -> String {
    let v: Vec<&str> = parts.iter().map(|s| s.as_ref()).collect();
    v.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let id = SubrouteId::new(9, "mysub");
        assert_eq!(
            id.to_hex(),
            "090068a20278845970f171889948ea7b834d159665fefae4dc509b0f598672ce"
        );
        assert_eq!(id.handler(), 9);
        assert!(id.to_go_bytes_string().starts_with("[9 0 104 162 "));
        assert_eq!(join_subroute(&["subroute", "1"]), "subroute/1");
    }
}
