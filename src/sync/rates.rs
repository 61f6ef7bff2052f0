//! Learned paces across restarts: the client's learned paces (`pace::Learner`, for the
//! endpoints whose limit Feishu does not publish) start from what `store::rates` holds for
//! the app, and are stored again while a cycle runs whenever they moved meaningfully.
//! A database error here only costs the memory of a pace: it is logged, never fatal.

use std::time::Duration;

use crate::feishu::FeishuClient;
use crate::store::Store;

/// How often a running cycle looks for a pace worth storing (it is stored only if it moved).
pub const SAVE_EVERY: Duration = Duration::from_secs(15);

/// Starts the client's learned paces from the stored ones (the first cycle of a process only:
/// later offers are ignored by the client).
pub async fn seed(store: &Store, client: &FeishuClient) {
    if client.learned_rates_seeded() {
        // The app's paces were started by an earlier cycle (of any helpdesk): no read.
        return;
    }
    match store.learned_rates(client.app_id()).await {
        Ok(stored) => {
            let stored: Vec<_> = stored.into_iter().map(|s| (s.endpoint, s.rate)).collect();
            if client.seed_learned_rates(&stored) {
                for (endpoint, rate) in &stored {
                    tracing::info!(
                        endpoint,
                        pace_per_s = rate.rate,
                        limit_per_s = rate.limit,
                        "starting from the pace learned before"
                    );
                }
            }
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not read the learned paces"),
    }
}

/// Stores each learned pace that moved meaningfully since it was last stored.
pub async fn save(store: &Store, client: &FeishuClient) {
    for (endpoint, rate) in client.unsaved_learned_rates() {
        if let Err(e) = store
            .save_learned_rate(client.app_id(), endpoint, &rate)
            .await
        {
            tracing::warn!(endpoint, error = %format!("{e:#}"), "could not store a learned pace");
        }
    }
}

/// Runs `work`, storing the learned paces every [`SAVE_EVERY`] while it runs (a backfill of
/// conversations may take hours), then once more.
pub async fn saving_while<F: Future>(store: &Store, client: &FeishuClient, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    let mut every = tokio::time::interval(SAVE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let output = loop {
        tokio::select! {
            output = &mut work => break output,
            _ = every.tick() => save(store, client).await,
        }
    };
    save(store, client).await;
    output
}
