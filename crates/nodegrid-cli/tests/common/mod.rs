//! Helpers shared by the CLI's integration tests.

use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback port for a child process to listen on, free when this returns.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), so neither an outgoing
/// connection nor another `bind(0)` can take it between this check and the child's bind: a
/// port from `bind(0)` and release could be, and a `nodegrid node` that then failed to bind
/// looked like a peer that never connected. Each test process starts at its own offset and
/// walks on, so concurrent tests and processes do not pick the same port.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (lo, hi) = below_ephemeral_range();
    let span = u32::from(hi - lo);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = lo + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {lo}..{hi}");
}

/// Up to 12,000 ports just below the ephemeral range (default 32768): 20768..32768.
fn below_ephemeral_range() -> (u16, u16) {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let hi = first_ephemeral.max(2048);
    (hi.saturating_sub(12_000).max(1024), hi)
}
