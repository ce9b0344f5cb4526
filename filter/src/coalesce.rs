//! One introspection callout per token per worker, however many requests
//! carry it at once.
//!
//! The proxy-wasm SDK delivers a callout's answer to the context that sent
//! it, and Envoy cancels a context's callouts when its stream ends. So the
//! first request for a token sends the callout and later ones wait on it;
//! the answer is applied to every waiter (the glue switches to each with
//! `set_effective_context`). If the sender's stream ends first, its waiters
//! are orphaned and the root context sends the callout again on its next
//! tick. The raw token is held only while a callout is in flight, for that.

use crate::cache::Key;
use std::collections::HashMap;

/// Who will receive the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The HTTP context that sent the callout.
    Stream(u32),
    /// The root context (after a rescue).
    Root,
    /// The sender went away; nobody will receive an answer.
    Orphaned,
}

#[derive(Debug)]
pub struct Pending<W> {
    pub owner: Owner,
    pub token: String,
    /// (context id, per-stream handle), the sender included.
    pub waiters: Vec<(u32, W)>,
    /// False once the cache was emptied while this callout was in flight:
    /// its answer may predate what emptied it.
    pub cacheable: bool,
}

#[derive(Debug)]
pub struct Inflight<W> {
    map: HashMap<Key, Pending<W>>,
    root_calls: HashMap<u32, Key>,
}

impl<W> Default for Inflight<W> {
    fn default() -> Self {
        Inflight {
            map: HashMap::new(),
            root_calls: HashMap::new(),
        }
    }
}

impl<W> Inflight<W> {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Waits on a callout already in flight for `key`; `false` (and `w` is
    /// dropped) when there is none.
    pub fn join(&mut self, key: &Key, context_id: u32, w: W) -> bool {
        match self.map.get_mut(key) {
            Some(p) => {
                p.waiters.push((context_id, w));
                true
            }
            None => false,
        }
    }

    /// Records a callout just sent by stream `context_id` for `key`.
    pub fn start(&mut self, key: Key, token: String, context_id: u32, w: W) {
        self.map.insert(
            key,
            Pending {
                owner: Owner::Stream(context_id),
                token,
                waiters: vec![(context_id, w)],
                cacheable: true,
            },
        );
    }

    /// Answers of every callout now in flight decide for their waiters but
    /// must not be cached.
    pub fn forget_answers(&mut self) {
        for p in self.map.values_mut() {
            p.cacheable = false;
        }
    }

    /// The answer for `key` arrived: everyone waiting on it.
    pub fn finish(&mut self, key: &Key) -> Option<Pending<W>> {
        self.map.remove(key)
    }

    /// Stream `context_id` ended while waiting on `key`.
    pub fn leave(&mut self, key: &Key, context_id: u32) {
        let Some(p) = self.map.get_mut(key) else {
            return;
        };
        p.waiters.retain(|(id, _)| *id != context_id);
        if p.waiters.is_empty() {
            self.map.remove(key);
        } else if p.owner == Owner::Stream(context_id) {
            p.owner = Owner::Orphaned;
        }
    }

    /// Keys (and their tokens) whose sender went away, for the root to
    /// send again.
    pub fn orphans(&self) -> Vec<(Key, String)> {
        self.map
            .iter()
            .filter(|(_, p)| p.owner == Owner::Orphaned)
            .map(|(k, p)| (*k, p.token.clone()))
            .collect()
    }

    /// The root sent callout `call` for orphaned `key`.
    pub fn adopt(&mut self, key: &Key, call: u32) {
        if let Some(p) = self.map.get_mut(key) {
            p.owner = Owner::Root;
            self.root_calls.insert(call, *key);
        }
    }

    /// The key of a callout the root sent, once.
    pub fn root_call(&mut self, call: u32) -> Option<Key> {
        self.root_calls.remove(&call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Key = [1; 32];

    #[test]
    fn the_first_request_sends_and_later_ones_wait() {
        let mut f = Inflight::default();
        assert!(!f.join(&K, 10, "a"));
        f.start(K, "tok".into(), 10, "a");
        assert!(f.join(&K, 11, "b"));
        assert!(f.join(&K, 12, "c"));
        let p = f.finish(&K).unwrap();
        assert_eq!(p.owner, Owner::Stream(10));
        let ids: Vec<u32> = p.waiters.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![10, 11, 12]);
        assert!(f.finish(&K).is_none());
        assert!(f.is_empty());
    }

    #[test]
    fn forgotten_answers_are_not_cacheable_later_ones_are() {
        let mut f = Inflight::default();
        f.start(K, "tok".into(), 10, ());
        f.forget_answers();
        f.start([2; 32], "tok2".into(), 11, ());
        assert!(!f.finish(&K).unwrap().cacheable);
        assert!(f.finish(&[2; 32]).unwrap().cacheable);
    }

    #[test]
    fn a_waiter_leaving_is_just_removed() {
        let mut f = Inflight::default();
        f.start(K, "tok".into(), 10, ());
        f.join(&K, 11, ());
        f.leave(&K, 11);
        assert!(f.orphans().is_empty());
        assert_eq!(f.finish(&K).unwrap().waiters.len(), 1);
    }

    #[test]
    fn the_sender_leaving_orphans_its_waiters_for_the_root() {
        let mut f = Inflight::default();
        f.start(K, "tok".into(), 10, ());
        f.join(&K, 11, ());
        f.leave(&K, 10);
        assert_eq!(f.orphans(), vec![(K, "tok".to_string())]);
        f.adopt(&K, 99);
        assert!(f.orphans().is_empty());
        assert_eq!(f.root_call(99), Some(K));
        assert_eq!(f.root_call(99), None);
        let p = f.finish(&K).unwrap();
        assert_eq!(p.owner, Owner::Root);
        assert_eq!(p.waiters.len(), 1);
    }

    #[test]
    fn the_last_one_leaving_forgets_the_callout() {
        let mut f = Inflight::default();
        f.start(K, "tok".into(), 10, ());
        f.leave(&K, 10);
        assert!(f.is_empty());
        assert!(!f.join(&K, 11, ()));
        f.leave(&K, 12);
    }
}
