//! The retry delay of a failed ticket, shared by the ticket and messages lanes of the queue.

use std::time::Duration;

/// How long a failed ticket waits before its next try: `base · 2^(failures)`, capped.
#[derive(Debug, Clone, Copy)]
pub struct FailureDelay {
    pub base: Duration,
    pub cap: Duration,
    /// After this many failures in a row that will repeat ([`Failure::permanent`](crate::domain::Failure::permanent)), the
    /// ticket is poisoned: parked (`next_due_at = 'infinity'`) until enqueued again.
    pub poison_after: u32,
}
