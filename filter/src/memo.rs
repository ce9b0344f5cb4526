//! Raw token → cache key, without SHA-256 on every request.
//!
//! SHA-256 of a 60-character token costs about a microsecond in Envoy's V8,
//! a tenth of the whole cache-hit path. The memo maps a 128-bit keyed hash
//! of the token (SipHash under a key drawn at random per VM, so no client
//! can aim at a collision or tell one apart) to the token's SHA-256. It
//! never holds the raw token. It keeps at most `capacity` entries and is
//! emptied when full, so it needs no eviction index: after a clear, each
//! token pays one SHA-256 again.

use crate::cache::{key_of, Key};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Memo of token SHA-256s, keyed by a secret-keyed hash of the token.
#[derive(Debug)]
pub struct KeyMemo {
    keyed: RandomState,
    map: HashMap<u128, Key, BuildHasherDefault<Prehashed>>,
    capacity: usize,
}

impl KeyMemo {
    pub fn new(capacity: usize) -> KeyMemo {
        KeyMemo {
            keyed: RandomState::new(),
            map: HashMap::default(),
            capacity: capacity.max(1),
        }
    }

    /// The token's cache key (its SHA-256), computed at most once per
    /// token while it stays in the memo.
    pub fn key_of(&mut self, token: &str) -> Key {
        let tag = self.tag(token);
        if let Some(key) = self.map.get(&tag) {
            return *key;
        }
        let key = key_of(token);
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(tag, key);
        key
    }

    /// Two SipHash outputs under one secret key, on inputs that differ in a
    /// domain byte: 128 bits, so an accidental collision between tokens
    /// (which would hand one token the other's decision) is out of reach.
    fn tag(&self, token: &str) -> u128 {
        let hi = self.keyed.hash_one((0u8, token));
        let lo = self.keyed.hash_one((1u8, token));
        u128::from(hi) << 64 | u128::from(lo)
    }
}

/// Hasher for keys that already are keyed hashes: hashing them again would
/// only cost time.
#[derive(Debug, Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-u128 keys; fold so it still works.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // Truncation intended: the low half is a uniform 64-bit hash.
        self.0 = n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgw_token::format;

    fn token(n: u8) -> String {
        format::from_secret(&[n; 32])
    }

    #[test]
    fn gives_the_sha256_of_each_token() {
        let mut memo = KeyMemo::new(16);
        for n in 0..10 {
            let t = token(n);
            let want = key_of(&t);
            assert_eq!(memo.key_of(&t), want, "first sight of token {n}");
            assert_eq!(memo.key_of(&t), want, "memoised token {n}");
        }
        assert_eq!(memo.map.len(), 10);
    }

    #[test]
    fn distinct_tokens_never_share_a_key() {
        let mut memo = KeyMemo::new(10_000);
        let mut seen = std::collections::HashSet::new();
        for n in 0..=255u8 {
            assert!(seen.insert(memo.key_of(&token(n))));
        }
        // Tokens that differ in one character only.
        let base = token(1);
        for (i, c) in ['A', 'B', 'z'].into_iter().enumerate() {
            let mut t: Vec<char> = base.chars().collect();
            t[20 + i] = c;
            let t: String = t.into_iter().collect();
            assert_eq!(memo.key_of(&t), key_of(&t));
        }
    }

    #[test]
    fn stays_within_its_capacity_and_keeps_answering() {
        let mut memo = KeyMemo::new(4);
        for n in 0..50 {
            let t = token(n);
            assert_eq!(memo.key_of(&t), key_of(&t));
            assert!(memo.map.len() <= 4, "{} entries", memo.map.len());
        }
        assert!(!memo.map.is_empty());
        // A token seen long ago is hashed again, to the same key.
        assert_eq!(memo.key_of(&token(0)), key_of(&token(0)));
    }

    #[test]
    fn each_memo_draws_its_own_secret() {
        let a = KeyMemo::new(1);
        let b = KeyMemo::new(1);
        let t = token(3);
        assert_eq!(a.tag(&t), a.tag(&t));
        assert_ne!(a.tag(&t), b.tag(&t));
        // The two halves come from different inputs.
        let tag = a.tag(&t);
        assert_ne!(tag >> 64, tag & u128::from(u64::MAX));
    }

    #[test]
    fn prehashed_passes_u128_keys_through() {
        let mut h = Prehashed::default();
        h.write_u128(0xdead_beef_u128 << 64 | 42);
        assert_eq!(h.finish(), 42);
        let mut h = Prehashed::default();
        h.write(&[1, 2]);
        assert_eq!(h.finish(), 0x0102);
    }
}
