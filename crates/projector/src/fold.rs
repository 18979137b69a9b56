//! The order-free parts every projection is built from (docs/contract.md section 6), and the input a
//! fold reads.
//!
//! - [`Lww`]: a last-writer-wins register. The winner is the offer with the greatest [`Stamp`],
//!   which ends in the event id, so the order is total and the same on every machine.
//! - [`Fold`]: wraps a projection's state with the set of event ids already applied, so applying
//!   an event twice changes nothing and counters inside the state are safe.
//! - min/max over `Option`s, and [`SortedSet`], [`SortedMap`], `BTreeSet` and `BTreeMap` for
//!   grow-only sets and maps keyed by an identity.
//!
//! Each part gives the same result for any order of the same offers, so a state built from them
//! is a pure function of the set of events.

use std::collections::HashSet;

use events::json::Value;
use events::timestamp::Millis;
use events::{EventId, Keys, Kind};
use rust_decimal::Decimal;

/// A grow-only set kept as a sorted vector, for the small sets of ids a journey holds (its
/// sessions, documents, transactions). It iterates and serializes in order, as a `BTreeSet`
/// does, in a fraction of the memory: a `BTreeSet` node has room for eleven values whatever it
/// holds (decision 0009). Inserting is linear in the set's size, so large sets belong in a
/// `BTreeSet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedSet<T>(Vec<T>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet(Vec::new())
    }
}

impl<T: Ord> SortedSet<T> {
    /// Adds `value`; answers whether it was new.
    pub fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, value);
                true
            }
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<T: Ord> Extend<T> for SortedSet<T> {
    /// Appends, then sorts once: an array of ids in a payload costs O(n log n), whatever its
    /// order, not an insert each.
    fn extend<I: IntoIterator<Item = T>>(&mut self, values: I) {
        self.0.extend(values);
        self.0.sort_unstable();
        self.0.dedup();
    }
}

impl<T: serde::Serialize> serde::Serialize for SortedSet<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A grow-only map kept as a vector sorted by key, for the few payments, documents and stages of
/// a journey; the same trade as [`SortedSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap(Vec::new())
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// The value at `key`, inserted as `V::default()` if absent.
    pub fn entry_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        let at = match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => at,
            Err(at) => {
                self.0.insert(at, (key, V::default()));
                at
            }
        };
        &mut self.0[at].1
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

/// One event as a fold sees it: the log row's columns and the parsed payload.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Arrival order (only connection status may depend on it).
    pub seq: i64,
    /// Identity; the final tie-break of every register.
    pub id: EventId,
    /// What it is.
    pub kind: Kind,
    /// The `clock` column: time in ms, or a resource's revision; `None` for arrival or none.
    pub clock: Option<i64>,
    /// When it happened (for resources, `updated_at`).
    pub occurred_at: Option<Millis>,
    /// When it was received.
    pub received_at: Millis,
    /// Stream keys.
    pub keys: &'a Keys,
    /// The payload, parsed.
    pub payload: &'a Value<'a>,
}

/// The order of offers to a register: greatest wins. The fields compare in order, then the id's
/// 16 bytes. A missing value is `i64::MIN`, below every real one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    major: i64,
    middle: i64,
    minor: i64,
    id: [u8; 16],
}

impl Stamp {
    /// Ordered by a time (or by nothing: such offers lose to any offer with a time).
    pub fn time(ms: Option<i64>, id: EventId) -> Stamp {
        Stamp {
            major: ms.unwrap_or(i64::MIN),
            middle: 0,
            minor: 0,
            id: *id.as_bytes(),
        }
    }

    /// Ordered by arrival: the connection-status exception (docs/contract.md section 3).
    pub fn arrival(seq: i64, id: EventId) -> Stamp {
        Stamp {
            major: seq,
            middle: 0,
            minor: 0,
            id: *id.as_bytes(),
        }
    }

    /// A resource: `revision`, then a `deleted` tombstone over anything else at the same
    /// revision, then `updated_at`.
    pub fn resource(
        revision: Option<i64>,
        deleted: bool,
        updated_at: Option<i64>,
        id: EventId,
    ) -> Stamp {
        Stamp {
            major: revision.unwrap_or(i64::MIN),
            middle: i64::from(deleted),
            minor: updated_at.unwrap_or(i64::MIN),
            id: *id.as_bytes(),
        }
    }

    /// The stamp of an event's own clock, for fields ordered by "the event with the greatest
    /// clock": times for timed kinds; connection status and unknown counts as no time.
    pub fn of(e: &Input<'_>) -> Stamp {
        match e.kind {
            Kind::ConnectionStatus | Kind::Unknown => Stamp::time(None, e.id),
            Kind::Resource => Stamp::resource(e.clock, false, e.occurred_at, e.id),
            _ => Stamp::time(e.clock, e.id),
        }
    }
}

/// A last-writer-wins register.
#[derive(Debug, Clone, PartialEq)]
pub struct Lww<T>(Option<(Stamp, T)>);

impl<T> Default for Lww<T> {
    fn default() -> Self {
        Lww(None)
    }
}

impl<T> Lww<T> {
    /// Offers `value` at `stamp`; it wins if the stamp is greater than the current one.
    /// `value` is only built when it wins.
    pub fn offer(&mut self, stamp: Stamp, value: impl FnOnce() -> T) {
        if self.0.as_ref().is_none_or(|(s, _)| stamp > *s) {
            self.0 = Some((stamp, value()));
        }
    }

    /// Offers a value that may be absent: an event that does not carry the field does not take
    /// part (docs/contract.md section 6).
    pub fn offer_some(&mut self, stamp: Stamp, value: Option<T>) {
        if let Some(v) = value
            && self.0.as_ref().is_none_or(|(s, _)| stamp > *s)
        {
            self.0 = Some((stamp, v));
        }
    }

    /// The winning value.
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref().map(|(_, v)| v)
    }
}

/// Keeps the least of the values seen.
pub fn keep_min(slot: &mut Option<i64>, v: Option<i64>) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |s| s.min(v)));
    }
}

/// Keeps the greatest of the values seen.
pub fn keep_max(slot: &mut Option<i64>, v: Option<i64>) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |s| s.max(v)));
    }
}

/// What a projection's state does with one event. Must not depend on what came before except
/// through order-free parts.
pub trait Apply: Default + Clone {
    /// Folds one event in.
    fn apply(&mut self, e: &Input<'_>);
}

/// A projection's state for one key, with what `meta` needs and the ids already applied.
#[derive(Debug, Clone, Default)]
pub struct Fold<S> {
    ids: HashSet<EventId>,
    last_seq: i64,
    updated_at: Millis,
    /// The projection's state.
    pub state: S,
}

impl<S: Apply> Fold<S> {
    /// Folds `e` in, once: an event already applied changes nothing.
    pub fn apply(&mut self, e: &Input<'_>) {
        if !self.ids.insert(e.id) {
            return;
        }
        if e.seq > self.last_seq {
            self.last_seq = e.seq;
            self.updated_at = e.received_at;
        }
        self.state.apply(e);
    }

    /// Distinct events folded.
    pub fn event_count(&self) -> i64 {
        self.ids.len() as i64
    }

    /// The greatest `seq` folded.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// `received_at` of the event at `last_seq`.
    pub fn updated_at(&self) -> Millis {
        self.updated_at
    }
}

// ---- reading payload values ----

/// A field as text: a string as is, a number as its exact text; anything else is absent.
pub fn text(v: Option<&Value<'_>>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.to_string()),
        Value::Number(n) => Some((*n).to_owned()),
        _ => None,
    }
}

/// A non-null field in canonical JSON: a record taken whole from one event.
pub fn canonical(v: Option<&Value<'_>>) -> Option<String> {
    match v? {
        Value::Null => None,
        v => Some(v.to_canonical()),
    }
}

/// Any field in canonical JSON, `null` included (values shown as sent).
pub fn canonical_or_null(v: Option<&Value<'_>>) -> String {
    v.map_or_else(|| "null".to_owned(), Value::to_canonical)
}

/// `true`/`false`, or the strings `"true"`/`"false"` (any case, trimmed).
pub fn boolean(v: Option<&Value<'_>>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// An exact decimal from a number's text or a numeric string (`5.56`, `"5.56"`, `1e3`).
/// `None` when it is not a number or does not fit 28 significant digits.
pub fn decimal(v: Option<&Value<'_>>) -> Option<Decimal> {
    let text = match v? {
        Value::Number(n) => *n,
        Value::String(s) => s.trim(),
        _ => return None,
    };
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    }
}

/// `a + b` at the larger scale of the two (`10 + 0.00 = 10.00`), or `None` when that does not
/// fit a 96-bit decimal. Done on the mantissas, not with `rust_decimal`'s addition, which
/// rounds past 28 significant digits and returns the other term, at its own scale, when one
/// is zero. A sum is exact or unknown, never rounded.
pub fn exact_sum(a: Decimal, b: Decimal) -> Option<Decimal> {
    let scale = a.scale().max(b.scale());
    let widened = |d: Decimal| {
        d.mantissa()
            .checked_mul(10_i128.checked_pow(scale - d.scale())?)
    };
    let sum = widened(a)?.checked_add(widened(b)?)?;
    Decimal::try_from_i128_with_scale(sum, scale).ok()
}

/// The strings of an array field, skipping anything else.
pub fn strings<'v>(v: Option<&'v Value<'_>>) -> impl Iterator<Item = String> + 'v {
    let elements: &[events::json::Element<'_>] = match v {
        Some(Value::Array(elements)) => elements,
        _ => &[],
    };
    elements.iter().filter_map(|e| text(Some(&e.value)))
}

/// A path of object members: `get(v, &["data", "paymentDetail"])`.
pub fn get<'v, 'a>(v: &'v Value<'a>, path: &[&str]) -> Option<&'v Value<'a>> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EventId {
        EventId::from_bytes([n; 16])
    }

    #[test]
    fn an_exact_sum_keeps_the_larger_scale_even_with_a_zero_or_is_none() {
        let d = |s: &str| Decimal::from_str_exact(s).expect("decimal");
        let sum = |a: &str, b: &str| exact_sum(d(a), d(b)).map(|s| s.to_string());
        for (a, b, expected) in [
            ("10", "0.00", Some("10.00")),
            ("0.00", "10", Some("10.00")),
            ("0", "0.0", Some("0.0")),
            ("19.90", "0.10", Some("20.00")),
            ("-5", "5.0", Some("0.0")),
            ("0.1", "0.2", Some("0.3")),
            (
                "79228162514264337593543950335",
                "0",
                Some("79228162514264337593543950335"),
            ),
            ("79228162514264337593543950335", "1", None),
            ("50000000000000000000000000000", "0.1", None),
            (
                "1",
                "0.0000000000000000000000000001",
                Some("1.0000000000000000000000000001"),
            ),
            ("10", "0.0000000000000000000000000001", None),
        ] {
            assert_eq!(sum(a, b).as_deref(), expected, "{a} + {b}");
        }
    }

    proptest::proptest! {
        /// Whatever the order and repetitions of inserts and extends, a `SortedSet` holds and
        /// serializes what a `BTreeSet` would.
        #[test]
        fn a_sorted_set_is_a_btree_set_in_any_insert_order(
            values in proptest::collection::vec("[a-c]{0,3}", 0..40),
        ) {
            let mut sorted = SortedSet::default();
            let mut btree = std::collections::BTreeSet::new();
            let (one_by_one, in_bulk) = values.split_at(values.len() / 2);
            for v in one_by_one {
                proptest::prop_assert_eq!(sorted.insert(v.clone()), btree.insert(v.clone()));
            }
            sorted.extend(in_bulk.iter().cloned());
            btree.extend(in_bulk.iter().cloned());
            proptest::prop_assert_eq!(sorted.iter().collect::<Vec<_>>(), btree.iter().collect::<Vec<_>>());
            proptest::prop_assert_eq!(sorted.is_empty(), btree.is_empty());
            proptest::prop_assert_eq!(
                serde_json::to_string(&sorted).expect("json"),
                serde_json::to_string(&btree).expect("json")
            );
        }

        /// And a `SortedMap` holds what a `BTreeMap` would, in the same order.
        #[test]
        fn a_sorted_map_is_a_btree_map_in_any_insert_order(
            entries in proptest::collection::vec(("[a-c]{0,3}", 0u32..100), 0..40),
        ) {
            let mut sorted: SortedMap<String, Vec<u32>> = SortedMap::default();
            let mut btree: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
            for (k, v) in &entries {
                sorted.entry_or_default(k.clone()).push(*v);
                btree.entry(k.clone()).or_default().push(*v);
            }
            proptest::prop_assert_eq!(sorted.iter().collect::<Vec<_>>(), btree.iter().collect::<Vec<_>>());
            proptest::prop_assert!(sorted.keys().eq(btree.keys()));
            proptest::prop_assert!(sorted.values().eq(btree.values()));
        }
    }

    #[test]
    fn a_register_keeps_the_greatest_stamp_in_any_order() {
        let offers = [
            (Some(5), 1, "a"),
            (Some(7), 2, "b"),
            (Some(7), 1, "c"),
            (None, 9, "d"),
        ];
        let mut results = Vec::new();
        for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let mut r = Lww::default();
            for i in perm {
                let (t, n, v) = offers[i];
                r.offer(Stamp::time(t, id(n)), || v);
            }
            results.push(*r.get().expect("set"));
        }
        assert_eq!(
            results,
            ["b", "b", "b"],
            "time 7 wins; between the two at 7, the greater id"
        );
    }

    #[test]
    fn a_tombstone_beats_a_non_deleted_offer_at_the_same_revision_whatever_its_time() {
        let mut r = Lww::default();
        r.offer(Stamp::resource(Some(3), true, Some(1), id(1)), || "deleted");
        r.offer(
            Stamp::resource(Some(3), false, Some(99), id(9)),
            || "updated later",
        );
        assert_eq!(r.get(), Some(&"deleted"));
        r.offer(
            Stamp::resource(Some(4), false, None, id(0)),
            || "revision 4",
        );
        assert_eq!(
            r.get(),
            Some(&"revision 4"),
            "a higher revision may undo it"
        );
    }

    #[test]
    fn decimals_are_exact_and_keep_their_scale() {
        let d = |s: &str| decimal(Some(&events::json::parse(s).expect("json")));
        assert_eq!(d("5.56").map(|d| d.to_string()).as_deref(), Some("5.56"));
        assert_eq!(
            d("\"19.90\"").map(|d| d.to_string()).as_deref(),
            Some("19.90")
        );
        assert_eq!(
            (d("19.90").expect("n") + d("0.10").expect("n")).to_string(),
            "20.00"
        );
        assert_eq!(
            (d("0.1").expect("n") + d("0.2").expect("n")).to_string(),
            "0.3"
        );
        assert_eq!(d("1e3").map(|d| d.to_string()).as_deref(), Some("1000"));
        assert_eq!(d("\"abc\""), None);
        assert_eq!(
            d("123456789012345678901234567890123"),
            None,
            "does not fit: absent, not wrong"
        );
    }

    #[test]
    fn booleans_accept_strings() {
        let b = |s: &str| boolean(Some(&events::json::parse(s).expect("json")));
        assert_eq!(
            [
                b("true"),
                b("\"true\""),
                b("\" TRUE \""),
                b("false"),
                b("\"false\""),
                b("\"yes\""),
                b("1")
            ],
            [
                Some(true),
                Some(true),
                Some(true),
                Some(false),
                Some(false),
                None,
                None
            ]
        );
    }
}
