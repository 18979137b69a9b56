//! Each projection as the runner sees it: which events it takes, its key, its version, and the
//! snapshot row it renders.

use std::collections::BTreeSet;

use events::{Keys, Kind};
use store::{Columns, Projection, SnapshotRow};

use crate::fold::{Apply, Fold};
use crate::{journey, member, resource, user};

/// What the projections may be configured with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Stage names that complete a journey (default: `journeyEnd`).
    pub completing_stages: BTreeSet<String>,
    /// At most this many keys' folds in each projection's cache, besides the byte bound. No
    /// bound by default (`usize::MAX`): bytes are what an operator sizes; tests use a small one.
    pub cache_keys: usize,
    /// Memory each projection's cache of folds may hold, in bytes, as estimated by
    /// [`fold_weight`](crate::runner::fold_weight). The least recently used folds go first
    /// when either bound is reached; a key that is not cached is refolded from the log.
    pub cache_bytes: usize,
    /// Events read from the log per incremental batch (one transaction each).
    pub batch_events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            completing_stages: BTreeSet::from(["journeyEnd".to_owned()]),
            cache_keys: usize::MAX,
            cache_bytes: 16 << 20,
            batch_events: 4096,
        }
    }
}

/// A projection's fold and rendering.
pub trait Model {
    /// The table and checkpoint.
    const PROJECTION: Projection;
    /// Bump when the fold or the rendering changes: a stored version that differs makes
    /// journeyd rebuild the projection.
    const VERSION: i64;
    /// The per-key state.
    type State: Apply;
    /// Whether events of this kind fold into this projection.
    fn accepts(kind: Kind) -> bool;
    /// The key an event folds into.
    fn key(keys: &Keys) -> Option<&str>;
    /// The snapshot row of a key's fold.
    fn row(key: &str, fold: &Fold<Self::State>, config: &Config) -> Option<SnapshotRow>;
    /// The configuration the rendering depends on; a stored fingerprint that differs makes
    /// journeyd rebuild the projection.
    fn fingerprint(_config: &Config) -> String {
        String::new()
    }
}

fn row(key: &str, columns: Columns, state: String, fold: &Fold<impl Apply>) -> SnapshotRow {
    SnapshotRow {
        key: key.to_owned(),
        columns,
        state,
        event_count: fold.event_count(),
        last_seq: fold.last_seq(),
        updated_at: fold.updated_at(),
    }
}

/// Journeys, keyed by `correlation_id`.
pub enum Journeys {}

impl Model for Journeys {
    const PROJECTION: Projection = Projection::Journeys;
    /// 2: a payment's `amount` is the text it was sent with (1 showed a summed decimal's text,
    /// `1E-2` as `0.01`), and every currency with an authorised payment has its key.
    /// 3: a currency's `amount_authorised` is `null` when one of its authorised amounts cannot
    /// be summed exactly (2 left the amount out of the sum).
    const VERSION: i64 = 3;
    type State = journey::Journey;

    fn accepts(kind: Kind) -> bool {
        matches!(
            kind,
            Kind::LinkCreated
                | Kind::SessionCreated
                | Kind::PaymentAttempt
                | Kind::DocumentGenerated
                | Kind::Stage
        )
    }

    fn key(keys: &Keys) -> Option<&str> {
        keys.correlation_id.as_deref()
    }

    fn row(key: &str, fold: &Fold<Self::State>, config: &Config) -> Option<SnapshotRow> {
        let r = journey::render(
            key,
            &fold.state,
            fold.event_count(),
            &config.completing_stages,
        );
        let columns = Columns::Journey {
            status: r.status.to_owned(),
            journey_id: r.journey_id,
            customer_reference: r.customer_reference,
            last_activity: r.last_activity,
        };
        Some(row(key, columns, r.state, fold))
    }

    fn fingerprint(config: &Config) -> String {
        let names: Vec<&str> = config
            .completing_stages
            .iter()
            .map(String::as_str)
            .collect();
        format!(
            "completing={}",
            serde_json::to_string(&names).unwrap_or_default()
        )
    }
}

/// Members, keyed by `member_guid`.
pub enum Members {}

impl Model for Members {
    const PROJECTION: Projection = Projection::Members;
    /// 2: a `*_count` sum is `null` when a term is negative, not a number, or past what a
    /// 96-bit decimal holds exactly (1 skipped such terms, or kept the sum it had, which made
    /// the result depend on the order of the events).
    const VERSION: i64 = 2;
    type State = member::Member;

    fn accepts(kind: Kind) -> bool {
        matches!(kind, Kind::MemberData | Kind::Job | Kind::ConnectionStatus)
    }

    fn key(keys: &Keys) -> Option<&str> {
        keys.member_guid.as_deref()
    }

    fn row(key: &str, fold: &Fold<Self::State>, _config: &Config) -> Option<SnapshotRow> {
        let r = member::render(key, &fold.state, fold.event_count());
        let columns = Columns::Member {
            user_guid: r.user_guid,
            connection_status: r.connection_status,
            last_activity: r.last_activity,
        };
        Some(row(key, columns, r.state, fold))
    }
}

/// Users, keyed by `user_guid`: every event that names the user.
pub enum Users {}

impl Model for Users {
    const PROJECTION: Projection = Projection::Users;
    const VERSION: i64 = 1;
    type State = user::User;

    fn accepts(kind: Kind) -> bool {
        matches!(
            kind,
            Kind::MemberData
                | Kind::Job
                | Kind::ConnectionStatus
                | Kind::Resource
                | Kind::Analytics
        )
    }

    fn key(keys: &Keys) -> Option<&str> {
        keys.user_guid.as_deref()
    }

    fn row(key: &str, fold: &Fold<Self::State>, _config: &Config) -> Option<SnapshotRow> {
        let r = user::render(key, &fold.state, fold.event_count());
        Some(row(
            key,
            Columns::User {
                last_activity: r.last_activity,
            },
            r.state,
            fold,
        ))
    }
}

/// Resources, keyed by `{type}/{guid}`.
pub enum Resources {}

impl Model for Resources {
    const PROJECTION: Projection = Projection::Resources;
    const VERSION: i64 = 1;
    type State = resource::Resource;

    fn accepts(kind: Kind) -> bool {
        kind == Kind::Resource
    }

    fn key(keys: &Keys) -> Option<&str> {
        keys.resource.as_deref()
    }

    fn row(key: &str, fold: &Fold<Self::State>, _config: &Config) -> Option<SnapshotRow> {
        let r = resource::render(&fold.state)?;
        let columns = Columns::Resource {
            resource_type: r.resource_type,
            guid: r.guid,
            user_guid: r.user_guid,
            deleted: r.deleted,
        };
        Some(row(key, columns, r.state, fold))
    }
}
