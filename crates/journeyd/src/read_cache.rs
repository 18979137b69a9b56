//! Rendered snapshot documents for the point-read routes (`GET /v1/journeys/{id}`,
//! `/v1/members/{guid}`, `/v1/users/{guid}`, `/v1/resources/{type}/{guid}`), kept in front of
//! SQLite (docs/decisions/0011-read-cache.md).
//!
//! Reads fill it; writes empty it. The projector drops a key's document right after the commit
//! that changed the key, before it announces the change on the live stream, and drops every
//! document when it finds that the snapshot tables moved under it (another process's `import`,
//! or a rebuild). A read that overlapped a drop does not keep its document: every drop advances
//! an epoch, and [`ReadCache::insert`] keeps a document only if the epoch is the one
//! [`ReadCache::get`] saw before the database was read. So a cached document is never older than
//! the snapshot row was at the last drop.
//!
//! Bounded in bytes, least recently read out first. A bound of zero turns it off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use lru::LruCache;
use store::Projection;

/// Cached documents by projection and key.
pub(crate) struct ReadCache {
    inner: Mutex<Inner>,
    max_bytes: usize,
    /// Set for good when nothing will drop documents any more (the projector stopped).
    disabled: AtomicBool,
}

struct Inner {
    docs: LruCache<(Projection, String), Bytes>,
    bytes: usize,
    epoch: u64,
}

/// What the cache holds: see [`ReadCache::usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) keys: usize,
    pub(crate) bytes: usize,
}

/// The memory a document is counted for: its text, its key, and a fixed allowance for the list
/// node (about 80 bytes with the key's and the `Bytes`' headers), the map's slot, the `Bytes`'
/// shared header once it is cloned, and the allocator's rounding.
fn weight(key: &str, doc: &[u8]) -> usize {
    doc.len() + key.len() + 160
}

impl ReadCache {
    pub(crate) fn new(max_bytes: usize) -> ReadCache {
        ReadCache {
            inner: Mutex::new(Inner {
                docs: LruCache::unbounded(),
                bytes: 0,
                epoch: 0,
            }),
            max_bytes,
            disabled: AtomicBool::new(false),
        }
    }

    /// Empties the cache and keeps it empty: every read goes to SQLite from now on.
    pub(crate) fn disable(&self) {
        self.disabled.store(true, Ordering::SeqCst);
        self.clear();
    }

    /// The cached document of `key`, or, on a miss, the epoch to hand to [`ReadCache::insert`]
    /// with the document read from the database.
    pub(crate) fn get(&self, projection: Projection, key: String) -> Result<Bytes, Miss> {
        if self.disabled.load(Ordering::SeqCst) {
            return Err(Miss { epoch: None, key });
        }
        let Ok(mut inner) = self.inner.lock() else {
            return Err(Miss { epoch: None, key });
        };
        let epoch = inner.epoch;
        let k = (projection, key);
        match inner.docs.get(&k) {
            Some(doc) => Ok(doc.clone()),
            None => Err(Miss {
                epoch: Some(epoch),
                key: k.1,
            }),
        }
    }

    /// Keeps `doc` as `miss`'s key's document, unless a drop happened since the miss (the
    /// document may then be older than the row) or it would not fit the bound on its own.
    pub(crate) fn insert(&self, projection: Projection, miss: Miss, doc: Bytes) {
        let Some(epoch) = miss.epoch else { return };
        let w = weight(&miss.key, &doc);
        if w > self.max_bytes {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.epoch != epoch {
            return;
        }
        let key = miss.key;
        if let Some((old_key, old)) = inner.docs.push((projection, key), doc) {
            inner.bytes -= weight(&old_key.1, &old);
        }
        inner.bytes += w;
        while inner.bytes > self.max_bytes {
            let Some((k, d)) = inner.docs.pop_lru() else {
                break;
            };
            inner.bytes -= weight(&k.1, &d);
        }
    }

    /// Drops `key`'s document: its snapshot row has just changed.
    pub(crate) fn invalidate(&self, projection: Projection, key: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.epoch += 1;
        // The map is keyed by owned strings; only look when there is anything to find.
        if !inner.docs.is_empty()
            && let Some(doc) = inner.docs.pop(&(projection, key.to_owned()))
        {
            inner.bytes -= weight(key, &doc);
        }
    }

    /// Drops every document: the snapshot tables changed in ways the projector did not see
    /// key by key.
    pub(crate) fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.epoch += 1;
            inner.docs.clear();
            inner.bytes = 0;
        }
    }

    /// Documents cached and their counted bytes.
    pub(crate) fn usage(&self) -> Usage {
        self.inner.lock().map_or_else(
            |_| Usage::default(),
            |inner| Usage {
                keys: inner.docs.len(),
                bytes: inner.bytes,
            },
        )
    }
}

/// A key that was not cached, and the epoch at the time of the miss.
pub(crate) struct Miss {
    /// `None` when the cache could not be read (a poisoned lock): then nothing is inserted.
    epoch: Option<u64>,
    pub(crate) key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const J: Projection = Projection::Journeys;

    fn doc(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// The counted bytes always equal the sum of the entries' weights.
    fn check_accounting(cache: &ReadCache) {
        let inner = cache.inner.lock().expect("lock");
        let sum: usize = inner.docs.iter().map(|(k, d)| weight(&k.1, d)).sum();
        assert_eq!(inner.bytes, sum);
        assert!(inner.bytes <= cache.max_bytes);
    }

    fn fill(cache: &ReadCache, p: Projection, key: &str, text: &str) {
        let miss = cache.get(p, key.to_owned()).expect_err("a miss");
        cache.insert(p, miss, doc(text));
        check_accounting(cache);
    }

    #[test]
    fn a_read_document_is_served_until_its_key_is_invalidated() {
        let cache = ReadCache::new(1 << 20);
        fill(&cache, J, "a", "{\"v\":1}");
        assert_eq!(cache.get(J, "a".into()).ok(), Some(doc("{\"v\":1}")));
        // Another projection's key of the same name is another entry.
        assert!(cache.get(Projection::Members, "a".into()).is_err());
        cache.invalidate(J, "a");
        check_accounting(&cache);
        assert!(cache.get(J, "a".into()).is_err());
        assert_eq!(cache.usage(), Usage::default());
    }

    #[test]
    fn a_read_that_overlapped_an_invalidation_is_not_kept() {
        let cache = ReadCache::new(1 << 20);
        // The reader misses, then reads the old row from the database ...
        let miss = cache.get(J, "a".into()).expect_err("miss");
        // ... while the projector commits a new row and drops the key ...
        cache.invalidate(J, "a");
        // ... so the old document must not be kept.
        cache.insert(J, miss, doc("old"));
        assert!(cache.get(J, "a".into()).is_err());
        // An invalidation of any other key counts too: the epoch is global.
        let miss = cache.get(J, "a".into()).expect_err("miss");
        cache.invalidate(Projection::Users, "u");
        cache.insert(J, miss, doc("old"));
        assert!(cache.get(J, "a".into()).is_err());
        // So does a clear.
        let miss = cache.get(J, "a".into()).expect_err("miss");
        cache.clear();
        cache.insert(J, miss, doc("old"));
        assert!(cache.get(J, "a".into()).is_err());
    }

    #[test]
    fn clear_drops_everything() {
        let cache = ReadCache::new(1 << 20);
        fill(&cache, J, "a", "1");
        fill(&cache, Projection::Resources, "goal/g", "2");
        assert_eq!(cache.usage().keys, 2);
        cache.clear();
        assert_eq!(cache.usage(), Usage::default());
        assert!(cache.get(Projection::Resources, "goal/g".into()).is_err());
    }

    #[test]
    fn the_least_recently_read_documents_go_first_when_the_bound_is_reached() {
        let text = "x".repeat(100);
        let one = weight("k0", text.as_bytes());
        let cache = ReadCache::new(3 * one);
        for k in ["k0", "k1", "k2"] {
            fill(&cache, J, k, &text);
        }
        assert_eq!(cache.usage().keys, 3);
        // Reading k0 makes k1 the least recently used.
        assert!(cache.get(J, "k0".into()).is_ok());
        fill(&cache, J, "k3", &text);
        assert_eq!(cache.usage().keys, 3);
        assert!(cache.get(J, "k1".into()).is_err());
        for k in ["k0", "k2", "k3"] {
            assert!(cache.get(J, k.into()).is_ok(), "{k}");
        }
        // Two reads that missed together both insert: the second replaces the first, and only
        // it is counted.
        let first = cache.get(J, "k4".into()).expect_err("miss");
        let second = cache.get(J, "k4".into()).expect_err("miss");
        cache.insert(J, first, doc(&text));
        cache.insert(J, second, doc("y"));
        check_accounting(&cache);
        assert_eq!(cache.get(J, "k4".into()).ok(), Some(doc("y")));
    }

    #[test]
    fn a_document_larger_than_the_bound_is_not_cached_and_evicts_nothing() {
        let cache = ReadCache::new(1000);
        fill(&cache, J, "small", "1");
        fill(&cache, J, "big", &"x".repeat(2000));
        assert!(cache.get(J, "big".into()).is_err());
        assert!(cache.get(J, "small".into()).is_ok());
    }

    #[test]
    fn a_disabled_cache_serves_and_keeps_nothing() {
        let cache = ReadCache::new(1 << 20);
        fill(&cache, J, "a", "1");
        cache.disable();
        assert!(cache.get(J, "a".into()).is_err());
        fill(&cache, J, "b", "2");
        assert!(cache.get(J, "b".into()).is_err());
        assert_eq!(cache.usage(), Usage::default());
    }

    #[test]
    fn a_zero_bound_caches_nothing() {
        let cache = ReadCache::new(0);
        fill(&cache, J, "a", "1");
        assert!(cache.get(J, "a".into()).is_err());
        assert_eq!(cache.usage(), Usage::default());
    }
}
