//! One-time tokens for the URLs the Exec, Attach and PortForward RPCs
//! return: each names the request it was made for, may be used once, and
//! expires (kubelet asks for the URL just before it connects).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crated_core::{Error, Result};

/// How long a token stays valid, as the kubelet streaming library's.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Tokens outstanding at most; more is a client asking for URLs and never
/// using them.
pub const MAX_TOKENS: usize = 1000;

/// The outstanding tokens and what each is for.
pub struct Tokens<T> {
    pending: Mutex<HashMap<String, (Instant, T)>>,
    ttl: Duration,
}

impl<T> Default for Tokens<T> {
    fn default() -> Self {
        Self::new(TOKEN_TTL)
    }
}

impl<T> Tokens<T> {
    /// Tokens valid for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// A new token for `request`.
    pub fn insert(&self, request: T) -> Result<String> {
        // 128 random bits: unguessable, and short in a URL.
        let token = crate::store::new_id()?[..32].to_owned();
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, (expires, _)| *expires > now);
        if pending.len() >= MAX_TOKENS {
            return Err(Error::unavailable(format!(
                "{MAX_TOKENS} streaming requests are already waiting for their connection"
            )));
        }
        pending.insert(token.clone(), (now + self.ttl, request));
        Ok(token)
    }

    /// The request of `token`, which is used up; `None` when it is
    /// unknown, used or expired.
    pub fn take(&self, token: &str) -> Option<T> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (expires, request) = pending.remove(token)?;
        (expires > Instant::now()).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once_and_expires() {
        let tokens = Tokens::new(Duration::from_secs(60));
        let a = tokens.insert("exec a").unwrap();
        let b = tokens.insert("exec b").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(tokens.take(&a), Some("exec a"));
        assert_eq!(tokens.take(&a), None, "a token is used once");
        assert_eq!(tokens.take("nonsense"), None);
        assert_eq!(tokens.take(&b), Some("exec b"));

        let short = Tokens::new(Duration::ZERO);
        let c = short.insert("late").unwrap();
        assert_eq!(short.take(&c), None, "an expired token is refused");
    }

    #[test]
    fn outstanding_tokens_are_bounded() {
        let tokens = Tokens::new(Duration::from_secs(60));
        for i in 0..MAX_TOKENS {
            tokens.insert(i).unwrap();
        }
        let err = tokens.insert(MAX_TOKENS).unwrap_err();
        assert!(err.to_string().contains("already waiting"), "{err}");
    }
}
