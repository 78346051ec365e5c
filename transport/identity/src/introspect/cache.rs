//! Introspection answers until they expire, keyed by the token's SHA-256 (never the token).

use std::collections::HashMap;
use std::time::Instant;

use scistream_fsm::Principal;
use scistream_transport::server::AuthError;

/// A token's SHA-256.
pub(crate) type Key = [u8; 32];

/// The key of `token`.
pub(crate) fn digest(token: &str) -> Key {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(d.as_ref());
    key
}

/// What a token proves, or why not.
pub(crate) type Answer = Result<Principal, AuthError>;

/// Answers until they expire; at most `cap` of them.
pub(crate) struct Cache {
    cap: usize,
    map: HashMap<Key, (Answer, Instant)>,
}

impl Cache {
    pub(crate) fn new(cap: usize) -> Self {
        Self { cap, map: HashMap::new() }
    }

    pub(crate) fn get(&mut self, key: &Key, now: Instant) -> Option<Answer> {
        match self.map.get(key) {
            Some((who, until)) if *until > now => Some(who.clone()),
            Some(_) => {
                self.map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put(&mut self, key: Key, who: Answer, until: Instant) {
        if self.cap == 0 {
            return;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            let now = Instant::now();
            self.map.retain(|_, (_, u)| *u > now);
            if self.map.len() >= self.cap
                && let Some(first) = self.map.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k)
            {
                self.map.remove(&first);
            }
        }
        self.map.insert(key, (who, until));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn p(s: &str) -> Principal {
        Principal(s.into())
    }

    #[test]
    fn cache_answers_until_expiry() {
        let mut c = Cache::new(4);
        let t0 = Instant::now();
        c.put(digest("a"), Ok(p("alice")), t0 + Duration::from_secs(5));
        assert_eq!(c.get(&digest("a"), t0), Some(Ok(p("alice"))));
        assert_eq!(c.get(&digest("b"), t0), None);
        assert_eq!(c.get(&digest("a"), t0 + Duration::from_secs(5)), None);
        assert!(c.map.is_empty(), "an expired answer is dropped when seen");
    }

    #[test]
    fn full_cache_evicts_what_expires_first() {
        let mut c = Cache::new(2);
        let t0 = Instant::now() + Duration::from_secs(100);
        c.put(digest("late"), Ok(p("l")), t0 + Duration::from_secs(50));
        c.put(digest("soon"), Ok(p("s")), t0 + Duration::from_secs(10));
        c.put(digest("new"), Ok(p("n")), t0 + Duration::from_secs(30));
        assert_eq!(c.map.len(), 2);
        assert_eq!(c.get(&digest("soon"), t0), None);
        assert_eq!(c.get(&digest("late"), t0), Some(Ok(p("l"))));
        assert_eq!(c.get(&digest("new"), t0), Some(Ok(p("n"))));
    }

    #[test]
    fn zero_sized_cache_holds_nothing() {
        let mut c = Cache::new(0);
        c.put(digest("a"), Ok(p("alice")), Instant::now() + Duration::from_secs(5));
        assert_eq!(c.get(&digest("a"), Instant::now()), None);
    }
}
