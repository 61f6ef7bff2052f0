//! tenant_access_token: fetched once, shared by all workers, refreshed ahead of expiry, and
//! dropped (not merely retried, as the official SDKs do) when the API rejects it.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Refresh this long before the token expires (Feishu issues a new one when < 30 min remain).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);

/// A token with the instant after which it must no longer be used.
#[derive(Clone)]
pub struct CachedToken {
    pub value: SecretString,
    pub refresh_at: Instant,
}

/// The single-flight token cache: callers queue on the mutex while one of them refreshes.
#[derive(Default)]
pub struct TokenCache {
    current: Mutex<Option<CachedToken>>,
}

impl TokenCache {
    /// The cached token if still fresh, else the result of `fetch` (cached on success).
    pub async fn get_or_fetch<F, Fut, E>(&self, fetch: F) -> Result<SecretString, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SecretString, Duration), E>>,
    {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let (value, lifetime) = fetch().await?;
        let now = Instant::now();
        // A lifetime from outside must not overflow the clock (then: refresh in a day).
        let refresh_at = now
            .checked_add(usable_lifetime(lifetime))
            .unwrap_or(now + Duration::from_secs(24 * 3600));
        *current = Some(CachedToken {
            value: value.clone(),
            refresh_at,
        });
        Ok(value)
    }

    /// The cached token if fresh, without waiting: None while a refresh is under way.
    pub fn try_current(&self) -> Option<SecretString> {
        let current = self.current.try_lock().ok()?;
        current
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.value.clone())
    }

    /// Drops `rejected` if it is still the cached token (another worker may already have
    /// replaced it, and that newer token must survive).
    pub async fn invalidate(&self, rejected: &SecretString) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|t| t.value.expose_secret() == rejected.expose_secret())
        {
            *current = None;
        }
    }
}

/// How long to use a token that lives `lifetime`: minus the margin, or half of a short lifetime.
pub fn usable_lifetime(lifetime: Duration) -> Duration {
    if lifetime > REFRESH_MARGIN * 2 {
        lifetime - REFRESH_MARGIN
    } else {
        lifetime / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn fetch_counted(n: &AtomicU32) -> Result<(SecretString, Duration), ()> {
        let i = n.fetch_add(1, Ordering::SeqCst);
        Ok((
            SecretString::from(format!("t-{i}")),
            Duration::from_secs(7200),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn cached_until_the_margin_then_refreshed() {
        let cache = TokenCache::default();
        let n = AtomicU32::new(0);
        let a = cache.get_or_fetch(|| fetch_counted(&n)).await.unwrap();
        tokio::time::advance(Duration::from_secs(7200) - REFRESH_MARGIN - Duration::from_secs(1))
            .await;
        let b = cache.get_or_fetch(|| fetch_counted(&n)).await.unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        tokio::time::advance(Duration::from_secs(2)).await;
        let c = cache.get_or_fetch(|| fetch_counted(&n)).await.unwrap();
        assert_eq!(c.expose_secret(), "t-1");
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn invalidate_drops_only_the_rejected_token() {
        let cache = TokenCache::default();
        let n = AtomicU32::new(0);
        let first = cache.get_or_fetch(|| fetch_counted(&n)).await.unwrap();
        cache.invalidate(&first).await;
        let second = cache.get_or_fetch(|| fetch_counted(&n)).await.unwrap();
        assert_eq!(second.expose_secret(), "t-1");
        // A late invalidation of the old token must not drop the new one.
        cache.invalidate(&first).await;
        let third = cache.get_or_fetch(|| fetch_counted(&n)).await.unwrap();
        assert_eq!(third.expose_secret(), "t-1");
    }

    #[tokio::test]
    async fn a_lifetime_beyond_the_clock_does_not_panic() {
        let cache = TokenCache::default();
        let token = cache
            .get_or_fetch(|| async {
                Ok::<_, ()>((SecretString::from("t".to_owned()), Duration::MAX))
            })
            .await
            .unwrap();
        assert_eq!(token.expose_secret(), "t");
        assert_eq!(cache.try_current().unwrap().expose_secret(), "t");
    }

    #[test]
    fn short_lifetimes_use_half() {
        assert_eq!(
            usable_lifetime(Duration::from_secs(600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            usable_lifetime(Duration::from_secs(7200)),
            Duration::from_secs(6600)
        );
    }
}
