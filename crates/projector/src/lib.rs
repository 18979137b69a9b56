//! journeyd's projections: the log folded into one snapshot per journey, MX member, MX user and
//! MX resource (docs/contract.md sections 6 and 7).
//!
//! The folds ([`journey`], [`member`], [`user`], [`resource`]) are pure: `apply` takes a state and
//! one event and does no I/O and cannot fail. Each state is built only from order-free parts
//! (see [`fold`]): last-writer-wins registers ordered by `(clock, event_id)`, grow-only sets,
//! maps keyed by an identity, min/max, and counters guarded by the set of events already
//! applied. So a snapshot is a pure function of the set of distinct events for its key,
//! whatever their order, duplicates or batching. The one exception, forced by the provider, is a
//! member's `connection_status`, ordered by arrival.
//!
//! The [`Runner`] is the shell: it tails the log through `store`, keeps hot folds in a bounded
//! cache, writes snapshots and checkpoints in one transaction, and rebuilds a projection into a
//! new table that is swapped in atomically. It never names SQLite; `store` does the SQL.

pub mod fold;
pub mod journey;
pub mod member;
mod model;
mod render;
pub mod resource;
mod runner;
pub mod user;

pub use model::{Config, Journeys, Members, Model, Resources, Users};
pub use runner::{
    CacheUsage, CatchUp, Change, Current, Rebuilt, Runner, Update, current, fold_weight,
};

/// The projections an event folds into, with its key in each.
pub fn projections_of(
    kind: events::Kind,
    keys: &events::Keys,
) -> impl Iterator<Item = (store::Projection, &str)> {
    fn one<M: Model>(kind: events::Kind, keys: &events::Keys) -> Option<(store::Projection, &str)> {
        if M::accepts(kind) {
            M::key(keys).map(|k| (M::PROJECTION, k))
        } else {
            None
        }
    }
    [
        one::<Journeys>(kind, keys),
        one::<Members>(kind, keys),
        one::<Users>(kind, keys),
        one::<Resources>(kind, keys),
    ]
    .into_iter()
    .flatten()
}
