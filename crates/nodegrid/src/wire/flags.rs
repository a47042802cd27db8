//! Flag bits (PROTOCOL.md §3.4).

/// The flag byte of a grid message. Unknown bits (0x40, 0x80) are kept and ignored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// A 4-byte CRC trailer is present.
    pub const CRC: Flags = Flags(0x01);
    /// Last message in this direction for this mux.
    pub const EOF: Flags = Flags(0x02);
    /// Reserved ("stateless" streams); a ConnectMux with it is rejected.
    pub const STATELESS: Flags = Flags(0x04);
    /// The payload is a UTF-8 error text.
    pub const ERR: Flags = Flags(0x08);
    /// The payload is present but empty.
    pub const ZERO: Flags = Flags(0x10);
    /// A 32-byte subroute trailer is present.
    pub const SUBROUTE: Flags = Flags(0x20);

    const NAMES: [(Flags, &'static str); 6] = [
        (Flags::CRC, "CRC"),
        (Flags::EOF, "EOF"),
        (Flags::STATELESS, "STATELESS"),
        (Flags::ERR, "ERR"),
        (Flags::ZERO, "ZERO"),
        (Flags::SUBROUTE, "SUBROUTE"),
    ];

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets or clears the bits of `other`.
    pub fn set(&mut self, other: Flags, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }

    /// These flags with the bits of `other` cleared.
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// Names of the set bits; unknown bits print as hex.
    pub fn names(self) -> Vec<String> {
        let mut v: Vec<String> = Self::NAMES
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, n)| n.to_string())
            .collect();
        let unknown = self.0 & 0xc0;
        if unknown != 0 {
            v.push(format!("0x{unknown:02x}"));
        }
        v
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.names().join(","))
    }
}

impl std::fmt::Display for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_bits() {
        assert_eq!(format!("{:?}", Flags::CRC | Flags::EOF), "[CRC,EOF]");
        assert_eq!(format!("{:?}", Flags(0xc1)), "[CRC,0xc0]");
        let mut f = Flags::NONE;
        f.set(Flags::ZERO, true);
        assert!(f.contains(Flags::ZERO));
        f.set(Flags::ZERO, false);
        assert_eq!(f, Flags::NONE);
        assert_eq!(
            (Flags::CRC | Flags::SUBROUTE).without(Flags::SUBROUTE),
            Flags::CRC
        );
    }
}
