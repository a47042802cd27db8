//! Which side of a pair dials (PROTOCOL.md §2.6): a pure function of the two host strings.

fn hash_concat(a: &str, b: &str) -> u64 {
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(a.as_bytes());
    v.extend_from_slice(b.as_bytes());
    twox_hash::XxHash3_64::oneshot(&v)
}

/// Whether the node known as `local` dials the node known as `remote`.
///
/// `h0 = XXH3(local ‖ remote)`, `h1 = XXH3(remote ‖ local)`; local dials iff `h0 < h1`, or, when
/// they are equal, iff `local < remote` bytewise. Exactly one of `should_dial(a, b)` and
/// `should_dial(b, a)` is true for `a != b`; `local == remote` is a configuration error and
/// returns `false`.
///
/// ```
/// assert!(nodegrid::wire::should_dial("http://10.0.0.1:9000", "http://10.0.0.2:9000"));
/// assert!(!nodegrid::wire::should_dial("http://node1:9000", "http://node2:9000"));
/// ```
pub fn should_dial(local: &str, remote: &str) -> bool {
    if local == remote {
        return false;
    }
    let h0 = hash_concat(local, remote);
    let h1 = hash_concat(remote, local);
    if h0 != h1 {
        h0 < h1
    } else {
        local.as_bytes() < remote.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(
            hash_concat("http://10.0.0.1:9000", "http://10.0.0.2:9000"),
            0xcc1635150e74eba3
        );
        assert_eq!(
            hash_concat("http://10.0.0.2:9000", "http://10.0.0.1:9000"),
            0xd0cb31a939f21921
        );
        assert!(should_dial("http://10.0.0.1:9000", "http://10.0.0.2:9000"));
        assert_eq!(
            hash_concat("http://node1:9000", "http://node2:9000"),
            0xa19eb777e0d7ada5
        );
        assert!(!should_dial("http://node1:9000", "http://node2:9000"));
        assert!(should_dial(
            "https://minio-1.example.com:9000",
            "https://minio-2.example.com:9000"
        ));
        assert!(!should_dial("a", "b"));
        assert!(!should_dial("x", "x"));
    }

    #[test]
    fn antisymmetric_over_35_hosts_and_roughly_even() {
        let hosts: Vec<String> = (0..35).map(|i| format!("http://10.0.0.{i}:9000")).collect();
        let mut dials = vec![0usize; hosts.len()];
        let mut pairs = 0;
        for (i, a) in hosts.iter().enumerate() {
            for (j, b) in hosts.iter().enumerate() {
                if i == j {
                    continue;
                }
                assert_ne!(should_dial(a, b), should_dial(b, a), "{a} / {b}");
                if should_dial(a, b) {
                    dials[i] += 1;
                }
                pairs += 1;
            }
        }
        assert_eq!(pairs, 35 * 34);
        assert_eq!(dials.iter().sum::<usize>(), 35 * 34 / 2);
        // Each host dials about half of its 34 peers; no host dials (almost) all or none.
        for d in &dials {
            assert!((5..=29).contains(d), "uneven dialing: {dials:?}");
        }
    }
}
