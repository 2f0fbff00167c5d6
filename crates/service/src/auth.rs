//! Who is calling: a hub token (header, `?token=`, or the login cookie),
//! checked against the hub and cached briefly; or the hub plugin, by its
//! shared secret.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::hub::Identity;

/// Most tokens remembered at once; past it the cache starts afresh.
const CACHED_TOKENS_MAX: usize = 10_000;

/// Identities of tokens recently checked with the hub.
pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Option<Identity>)>>,
}

impl TokenCache {
    /// A cache keeping answers for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The cached answer for `token`, if fresh. `Some(None)` is a token the
    /// hub rejected.
    pub fn get(&self, token: &str) -> Option<Option<Identity>> {
        let entries = self.entries.lock().expect("token cache lock");
        entries
            .get(token)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, identity)| identity.clone())
    }

    /// Remembers the hub's answer for `token`.
    pub fn put(&self, token: &str, identity: Option<Identity>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().expect("token cache lock");
        if entries.len() >= CACHED_TOKENS_MAX {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= CACHED_TOKENS_MAX {
                entries.clear();
            }
        }
        entries.insert(token.to_string(), (Instant::now(), identity));
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_equal(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
        assert!(!secrets_equal("", "a"));
    }

    #[test]
    fn cache_expires() {
        let cache = TokenCache::new(Duration::from_millis(50));
        cache.put("t", None);
        assert_eq!(cache.get("t"), Some(None));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("t"), None);
    }
}
