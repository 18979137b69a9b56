//! The keys whose newest acknowledged events the projector has not folded yet (decision 0013).
//!
//! A webhook's `204` goes out when its events are in the log, and the projector folds them a
//! moment later. Until then a snapshot row, and the read cache's copy of it, lack them. The
//! webhook route notes each new event's keys here before it answers. A point read of a noted key
//! folds the key's events from the log instead of reading its snapshot, so it shows every
//! acknowledged event, and the same bytes the projector will write. The projector's progress
//! (`settle`) ends each note once the snapshots hold its events.
//!
//! Bounded: past [`Unprojected::new`]'s `max_keys` keys, new notes are dropped and counted, and
//! the dropped note's `seq` raises the high-water mark instead: until the projector settles
//! past it, every key is read through, as after a start with unprojected events. That happens
//! only when the projector is far behind: a rebuild in progress, or a projector that keeps
//! failing. (While a round fails, and once the projector thread has ended, the read API reads
//! every key through anyway.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use prometheus_client::metrics::counter::Counter;
use store::Projection;

/// Keys with acknowledged events newer than the projector's checkpoint.
pub(crate) struct Unprojected {
    inner: Mutex<Inner>,
    /// Whether `contains` must look: a key is noted, or the snapshots went back. While false,
    /// a point read takes no lock.
    busy: AtomicBool,
    /// `Inner::high`, for [`Unprojected::behind`] without the lock.
    high: AtomicI64,
    /// Per projection (in [`Projection::ALL`]'s order), the highest checkpoint a point read
    /// found its table at.
    seen: [AtomicI64; 4],
    max_keys: usize,
    /// Notes not kept because the bound was reached (`journeyd_unprojected_dropped_total`).
    dropped: Counter,
}

struct Inner {
    /// Each key's greatest noted `seq`, one map per projection (in [`Projection::ALL`]'s order),
    /// so that a lookup borrows the key instead of allocating it.
    keys: [HashMap<Box<str>, i64>; 4],
    /// Keys in all four maps.
    len: usize,
    /// Every event up to this `seq` is in the snapshots and out of the read cache.
    settled: i64,
    /// The highest `settled` so far. When another process's rebuild swaps in tables built
    /// from an older log head, `settled` goes back, and notes it had ended cover events the
    /// new tables lack: every key is read through until `settled` is back here.
    high: i64,
}

impl Inner {
    fn busy(&self) -> bool {
        self.len > 0 || self.settled < self.high
    }
}

impl Unprojected {
    /// Empty, with the projector's checkpoint at `settled` and the log's head at `head`: while
    /// the projector has not reached `head`, every key is read through (events acknowledged
    /// before this process started are noted nowhere). Keeps at most `max_keys` keys and counts
    /// the notes it drops in `dropped`.
    pub(crate) fn new(settled: i64, head: i64, max_keys: usize, dropped: Counter) -> Unprojected {
        let high = settled.max(head);
        Unprojected {
            inner: Mutex::new(Inner {
                keys: Default::default(),
                len: 0,
                settled,
                high,
            }),
            busy: AtomicBool::new(settled < high),
            high: AtomicI64::new(high),
            seen: Default::default(),
            max_keys,
            dropped,
        }
    }

    /// Notes that an event at `seq` folds into `key`. A note the projector has already passed
    /// is not kept.
    pub(crate) fn note(&self, projection: Projection, key: &str, seq: i64) {
        self.note_all(std::iter::once((projection, key, seq)));
    }

    /// [`Unprojected::note`] for each item, under one lock (a delivery's events, after their
    /// commit and before their acknowledgement).
    pub(crate) fn note_all<'a>(&self, notes: impl IntoIterator<Item = (Projection, &'a str, i64)>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        for (projection, key, seq) in notes {
            if seq <= inner.settled {
                continue;
            }
            let full = inner.len >= self.max_keys;
            match inner.keys[slot(projection)].get_mut(key) {
                Some(noted) => *noted = (*noted).max(seq),
                None if full => {
                    // Not kept: every key is read through until the projector is past it.
                    self.dropped.inc();
                    inner.high = inner.high.max(seq);
                    self.high.store(inner.high, Ordering::SeqCst);
                }
                None => {
                    inner.keys[slot(projection)].insert(Box::from(key), seq);
                    inner.len += 1;
                }
            }
        }
        self.busy.store(inner.busy(), Ordering::SeqCst);
    }

    /// The projector's snapshots hold every event up to `checkpoint`, and the read cache has
    /// dropped the documents they changed: notes up to it end.
    pub(crate) fn settle(&self, checkpoint: i64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.settled = checkpoint;
        inner.high = inner.high.max(checkpoint);
        self.high.store(inner.high, Ordering::SeqCst);
        if inner.len > 0 {
            for keys in &mut inner.keys {
                keys.retain(|_, seq| *seq > checkpoint);
            }
            inner.len = inner.keys.iter().map(HashMap::len).sum();
        }
        self.busy.store(inner.busy(), Ordering::SeqCst);
    }

    /// Whether `key` has an acknowledged event the snapshots do not hold yet.
    pub(crate) fn contains(&self, projection: Projection, key: &str) -> bool {
        if !self.busy.load(Ordering::SeqCst) && !self.inner.is_poisoned() {
            return false;
        }
        let Ok(inner) = self.inner.lock() else {
            // A poisoned lock: read through, which is never stale.
            return true;
        };
        if inner.settled < inner.high {
            return true;
        }
        inner.keys[slot(projection)]
            .get(key)
            .is_some_and(|seq| *seq > inner.settled)
    }

    /// Called for a point read of `projection`'s table at `checkpoint`, before it answers:
    /// whether that table is behind what point reads may have shown, so that the read must fold
    /// the log instead. Behind means below the projector's highest settled checkpoint, or below
    /// the highest checkpoint a read of this table has seen (another process's `import` or
    /// catch-up can move a table past the projector, unnoted). Only another process's `rebuild`
    /// sends a table back, and until this daemon's projector notices the swap nothing else here
    /// knows.
    pub(crate) fn behind(&self, projection: Projection, checkpoint: i64) -> bool {
        let seen = self.seen[slot(projection)].fetch_max(checkpoint, Ordering::SeqCst);
        checkpoint < self.high.load(Ordering::SeqCst).max(seen) || self.inner.is_poisoned()
    }

    /// Keys noted now (for `/metrics`).
    pub(crate) fn keys(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.len)
    }
}

fn slot(projection: Projection) -> usize {
    match projection {
        Projection::Journeys => 0,
        Projection::Members => 1,
        Projection::Users => 2,
        Projection::Resources => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const J: Projection = Projection::Journeys;
    const M: Projection = Projection::Members;

    fn unprojected(settled: i64, max_keys: usize) -> Unprojected {
        Unprojected::new(settled, settled, max_keys, Counter::default())
    }

    /// A process that starts with unprojected events in the log knows none of their keys: every
    /// key is read through, and no table below the head is taken as current, until the
    /// projector reaches the head.
    #[test]
    fn a_start_behind_the_head_reads_every_key_through_until_the_projector_gets_there() {
        let u = Unprojected::new(10, 25, 100, Counter::default());
        assert!(u.contains(J, "any") && u.contains(M, "other"));
        assert!(u.behind(J, 24), "a table short of the head");
        u.settle(20);
        assert!(u.contains(J, "any"), "not there yet");
        u.settle(25);
        assert!(!u.contains(J, "any"));
        assert!(!u.behind(J, 25));
        let current = Unprojected::new(25, 25, 100, Counter::default());
        assert!(!current.contains(J, "any"), "nothing to catch up");
    }

    fn usage(u: &Unprojected) -> (usize, u64) {
        (u.keys(), u.dropped.get())
    }

    #[test]
    fn a_note_lasts_until_the_projector_passes_it() {
        let u = unprojected(10, 100);
        assert!(!u.contains(J, "a"));
        u.note(J, "a", 11);
        u.note(J, "a", 13);
        assert!(u.contains(J, "a"));
        assert!(!u.contains(M, "a"), "per projection");
        assert!(!u.contains(J, "b"));
        u.settle(12);
        assert!(u.contains(J, "a"), "its newest event is still ahead");
        u.settle(13);
        assert!(!u.contains(J, "a"));
        assert_eq!(usage(&u), (0, 0), "settled notes are gone, not just hidden");
    }

    #[test]
    fn a_note_behind_the_projector_is_not_kept() {
        // The projector folded the event before its webhook got round to noting it.
        let u = unprojected(0, 100);
        u.settle(20);
        u.note(J, "a", 20);
        assert!(!u.contains(J, "a"));
        assert_eq!(usage(&u), (0, 0));
    }

    #[test]
    fn snapshots_that_went_back_make_every_key_read_through_until_they_catch_up() {
        // Another process's rebuild swapped in tables built from an older head.
        let u = unprojected(0, 100);
        u.note(J, "a", 5);
        u.settle(10);
        assert!(!u.contains(J, "a"));
        u.settle(4);
        assert!(u.contains(J, "a"), "its event at 5 is not in the new table");
        assert!(u.contains(M, "never-noted"));
        u.settle(9);
        assert!(u.contains(J, "a"), "not yet back at 10");
        u.settle(10);
        assert!(!u.contains(J, "a"));
        assert!(!u.contains(M, "never-noted"));
    }

    #[test]
    fn past_the_bound_new_keys_are_dropped_and_counted_but_noted_keys_still_move() {
        let u = unprojected(0, 2);
        u.note(J, "a", 1);
        u.note(J, "b", 2);
        u.note(J, "c", 3);
        assert_eq!(usage(&u), (2, 1));
        assert!(
            u.contains(J, "c") && u.contains(M, "never-noted"),
            "a dropped note makes every key read through"
        );
        assert!(u.behind(J, 2), "no table short of it is taken as current");
        u.note(J, "a", 4);
        u.settle(3);
        assert!(
            u.contains(J, "a"),
            "a noted key takes newer events when full"
        );
        assert!(!u.contains(J, "b"), "past the dropped note: as before");
        assert!(!u.contains(J, "c"));
        u.note(J, "c", 5);
        assert!(u.contains(J, "c"), "room again after a settle");
        assert_eq!(usage(&u), (2, 1));
    }
}
