//! The CRC trailer (PROTOCOL.md §3.5): low 32 bits of XXH3-64 (seed 0), little-endian.

/// Length of the CRC trailer in bytes.
pub const CRC_LEN: usize = 4;

/// The CRC of `data`: the low 32 bits of XXH3-64 with seed 0 and the default secret.
///
/// `twox-hash` picks AVX2 or SSE2 at run time, about 1.5 to 2 times as fast as a portable
/// build on inputs of 200 bytes and more (the CRC is computed on every message sent and
/// received over plaintext connections).
pub fn crc32_of(data: &[u8]) -> u32 {
    twox_hash::XxHash3_64::oneshot(data) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh3_of_empty_matches_spec() {
        assert_eq!(twox_hash::XxHash3_64::oneshot(b""), 0x2d06800538d394c2);
        assert_eq!(crc32_of(b""), 0x38d394c2);
    }

    #[test]
    fn agrees_with_a_second_implementation_for_every_size_class() {
        // XXH3 has separate code paths for 0, 1-3, 4-8, 9-16, 17-128, 129-240 and longer
        // inputs, and the long path has stripe and block boundaries (64 B, 1 KiB).
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut sizes: Vec<usize> = (0..=300).collect();
        sizes.extend([511, 512, 513, 1023, 1024, 1025, 4096, 65_536, 70_000]);
        for n in sizes {
            let d = &data[..n];
            assert_eq!(
                twox_hash::XxHash3_64::oneshot(d),
                xxhash_rust::xxh3::xxh3_64(d),
                "length {n}"
            );
        }
    }
}
