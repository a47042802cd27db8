//! The CRC trailer (PROTOCOL.md §3.5): low 32 bits of XXH3-64 (seed 0), little-endian.

/// Length of the CRC trailer in bytes.
pub const CRC_LEN: usize = 4;

/// The CRC of `data`: the low 32 bits of XXH3-64 with seed 0 and the default secret.
pub fn crc32_of(data: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(data) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh3_of_empty_matches_spec() {
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06800538d394c2);
        assert_eq!(crc32_of(b""), 0x38d394c2);
    }
}
