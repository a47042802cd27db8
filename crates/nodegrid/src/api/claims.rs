//! Two processes with one host string (PROTOCOL.md §2.7): sessions for one host arriving from
//! two instance IDs in turn. A new instance normally replaces the live session at once (a
//! restarted peer must get in); alternation means two processes run with the same host string,
//! and replacing without pause would make them take turns as fast as they can dial.

use crate::transport::diagnose::WARN_INTERVAL;
use std::time::Duration;
use tokio::time::Instant;

/// A session from instance A replacing one from instance B, within this long of B having
/// replaced A, means two processes claim the same host string.
const CLAIM_FLIP_WINDOW: Duration = Duration::from_secs(10);
/// How long the live session is kept against the other claimant after the first flip; doubled
/// at every further flip, up to [`CLAIM_HOLD_MAX`].
const CLAIM_HOLD_MIN: Duration = Duration::from_secs(2);
const CLAIM_HOLD_MAX: Duration = Duration::from_secs(30);

/// Who has recently claimed to be this connection's host (accepting side).
#[derive(Default)]
pub(crate) struct Claims {
    /// The instance whose session the current one replaced, and when.
    replaced: Option<([u8; 16], Instant)>,
    /// While set, sessions from another instance than the live one are refused.
    hold_until: Option<Instant>,
    hold: Duration,
    last_warn: Option<Instant>,
}

/// An instance ID as a UUID string.
pub(crate) fn instance_text(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).to_string()
}

impl Claims {
    /// Whether a session from `instance` may replace the live one (from `live`, if any). When
    /// sessions keep arriving from two instances in turn, the live session is kept for a while
    /// (2 s, doubling to 30 s), the other is refused with the returned reason, and one WARN
    /// (per 30 s) names both instances.
    pub(crate) fn admit(
        &mut self,
        live: Option<[u8; 16]>,
        instance: [u8; 16],
        local: &str,
        remote: &str,
    ) -> Result<(), String> {
        let Some(current) = live.filter(|c| *c != instance) else {
            return Ok(());
        };
        let now = Instant::now();
        let flipping = self
            .replaced
            .is_some_and(|(id, at)| id == instance && now.duration_since(at) < CLAIM_FLIP_WINDOW);
        let holding = self.hold_until.is_some_and(|t| now < t);
        if !flipping && !holding {
            self.replaced = Some((current, now));
            return Ok(());
        }
        if !holding {
            self.hold = (self.hold * 2).clamp(CLAIM_HOLD_MIN, CLAIM_HOLD_MAX);
            self.hold_until = Some(now + self.hold);
        }
        let (live_id, new_id) = (instance_text(&current), instance_text(&instance));
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_INTERVAL)
        {
            self.last_warn = Some(now);
            tracing::warn!(
                local = %local,
                remote = %remote,
                live = %live_id,
                other = %new_id,
                "two processes claim to be {remote}: sessions keep arriving from instances \
                 {live_id} and {new_id} in turn; keeping the live one and refusing the other \
                 for a while. Run one process per host string."
            );
        }
        Err(format!(
            "host {remote} is connected from another process (instance {live_id}); this one \
             is instance {new_id}: run one process per host string"
        ))
    }
}
