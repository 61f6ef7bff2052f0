//! Liveness: a monotonic heartbeat the daemon loop and every cycle's progress refresh, the
//! systemd watchdog fed while the heartbeat is fresh, and the stall watch that ends a cycle
//! without progress for `sync.stall_timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Milliseconds on a monotonic clock, for heartbeats: a wall-clock step is not a stall.
pub fn now_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

/// A shared "last sign of life" time ([`now_ms`]).
#[derive(Clone, Debug)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Default for Heartbeat {
    /// A heartbeat that beat just now.
    fn default() -> Self {
        Self(Arc::new(AtomicI64::new(now_ms())))
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the last beat.
    pub fn idle_ms(&self) -> i64 {
        now_ms() - self.0.load(Ordering::Relaxed)
    }
}

/// Pings systemd's watchdog while the heartbeat is fresh; a loop stuck past the stall timeout
/// (plus a margin) stops the pings and systemd restarts the service. None without a watchdog.
pub fn spawn_watchdog(heartbeat: Heartbeat, stall_timeout: Duration) -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let limit_ms = (stall_timeout + Duration::from_secs(120)).as_millis() as i64;
    Some(tokio::spawn(async move {
        loop {
            if heartbeat.idle_ms() < limit_ms {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!("the daemon loop is stuck; no longer feeding systemd's watchdog");
            }
            tokio::time::sleep(period / 2).await;
        }
    }))
}

/// Cancels `cycle_stop` once `progress` has not beaten for `stall_timeout`. Abort the handle
/// when the cycle ends.
pub fn spawn_stall_watch(
    progress: Heartbeat,
    stall_timeout: Duration,
    cycle_stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let check = (stall_timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(check).await;
            let idle_ms = progress.idle_ms();
            if idle_ms > stall_timeout.as_millis() as i64 {
                tracing::error!(
                    idle_s = idle_ms / 1000,
                    "the cycle made no progress within sync.stall_timeout; ending it"
                );
                cycle_stop.cancel();
                return;
            }
        }
    })
}
