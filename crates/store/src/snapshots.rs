//! Snapshot tables and checkpoints: the SQL behind the projector (docs/contract.md sections 5 to 7).
//!
//! The store does not know what a snapshot contains; the projector hands it rows with their
//! indexed columns and `state` JSON already rendered.

use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, Transaction, params};

use crate::{Error, Millis, Result};

/// A projection: one snapshot table and one checkpoint row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    /// Per journey instance (`correlationId`).
    Journeys,
    /// Per MX member (`member_guid`).
    Members,
    /// Per MX user (`user_guid`).
    Users,
    /// Per MX resource (`{type}/{guid}`).
    Resources,
}

impl Projection {
    /// Every projection.
    pub const ALL: [Projection; 4] = [
        Projection::Journeys,
        Projection::Members,
        Projection::Users,
        Projection::Resources,
    ];

    /// The name used by the CLI, the API and the `checkpoints` table (also the table's name).
    pub fn name(self) -> &'static str {
        match self {
            Projection::Journeys => "journeys",
            Projection::Members => "members",
            Projection::Users => "users",
            Projection::Resources => "resources",
        }
    }

    /// The `events` column holding this projection's key.
    pub fn event_key_column(self) -> &'static str {
        match self {
            Projection::Journeys => "correlation_id",
            Projection::Members => "member_guid",
            Projection::Users => "user_guid",
            Projection::Resources => "resource_key",
        }
    }

    fn key_column(self) -> &'static str {
        match self {
            Projection::Resources => "key",
            other => other.event_key_column(),
        }
    }
}

impl std::str::FromStr for Projection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Projection::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!("unknown projection `{s}` (expected journeys, members, users or resources)")
            })
    }
}

/// The indexed columns of a snapshot row, per projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Columns {
    /// `journeys` columns.
    Journey {
        /// `created`, `opened`, `paid` or `completed`.
        status: String,
        /// The journey definition id.
        journey_id: Option<String>,
        /// The customer reference.
        customer_reference: Option<String>,
        /// `last_occurred_at`, ms.
        last_activity: Option<Millis>,
    },
    /// `members` columns.
    Member {
        /// The member's user.
        user_guid: Option<String>,
        /// The latest connection status.
        connection_status: Option<String>,
        /// `last_occurred_at`, ms.
        last_activity: Option<Millis>,
    },
    /// `users` columns.
    User {
        /// `last_occurred_at`, ms.
        last_activity: Option<Millis>,
    },
    /// `resources` columns.
    Resource {
        /// The envelope key (`goal`, `account`, ...).
        resource_type: String,
        /// The resource's guid.
        guid: String,
        /// Its user.
        user_guid: Option<String>,
        /// Whether the winning event is a `deleted` tombstone.
        deleted: bool,
    },
}

/// One snapshot, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// The key (correlation id, member guid, user guid, `type/guid`).
    pub key: String,
    /// Indexed columns.
    pub columns: Columns,
    /// The `state` document, compact JSON.
    pub state: String,
    /// Distinct events folded.
    pub event_count: i64,
    /// The greatest `seq` folded.
    pub last_seq: i64,
    /// `received_at` of the event at `last_seq`.
    pub updated_at: Millis,
}

/// A stored snapshot, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The key.
    pub key: String,
    /// The `state` document.
    pub state: String,
    /// Distinct events folded.
    pub event_count: i64,
    /// The greatest `seq` folded.
    pub last_seq: i64,
    /// `received_at` of the event at `last_seq`.
    pub updated_at: Millis,
}

impl From<SnapshotRow> for Snapshot {
    /// The snapshot a reader gets back once the row is written.
    fn from(row: SnapshotRow) -> Snapshot {
        Snapshot {
            key: row.key,
            state: row.state,
            event_count: row.event_count,
            last_seq: row.last_seq,
            updated_at: row.updated_at,
        }
    }
}

/// A projection's progress and provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Which projection.
    pub projection: Projection,
    /// Every event with `seq` up to this is folded into the snapshots.
    pub seq: i64,
    /// The fold code's version that built the snapshots.
    pub version: i64,
    /// The configuration that built them (for journeys, the completing stage names).
    pub fingerprint: String,
    /// Incremented by every rebuild swap.
    pub generation: i64,
}

/// What a projector expects a checkpoint to still be when its batch commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Which projection.
    pub projection: Projection,
    /// The generation it read (a rebuild swap changes it).
    pub generation: i64,
    /// The `seq` it folded from (another process projecting changes it).
    pub seq: i64,
}

/// A batch of incremental projection work, committed atomically with the checkpoints it moves.
#[derive(Debug, Clone, Default)]
pub struct ProjectBatch {
    /// Each touched projection's checkpoint as the batch was computed against; if any moved,
    /// nothing is written and the writer answers [`Error::Stale`].
    pub expect: Vec<Expect>,
    /// Snapshots to upsert.
    pub rows: Vec<(Projection, SnapshotRow)>,
    /// New checkpoint `seq` per projection.
    pub checkpoints: Vec<(Projection, i64)>,
}

/// Filters for listing journeys.
#[derive(Debug, Clone, Default)]
pub struct JourneyFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only this journey definition.
    pub journey_id: Option<String>,
    /// Only this customer reference.
    pub customer_reference: Option<String>,
    /// Only keys after this one (the cursor of the previous page).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

pub(crate) fn read_checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>> {
    let mut stmt =
        conn.prepare_cached("SELECT projection, seq, version, fingerprint, generation FROM checkpoints ORDER BY projection")?;
    let rows = stmt.query_map([], |r| {
        let name: String = r.get(0)?;
        Ok((name, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, seq, version, fingerprint, generation) = row?;
        if let Ok(projection) = name.parse() {
            out.push(Checkpoint {
                projection,
                seq,
                version,
                fingerprint,
                generation,
            });
        }
    }
    Ok(out)
}

fn snapshot(r: &Row<'_>) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot {
        key: r.get(0)?,
        state: r.get(1)?,
        event_count: r.get(2)?,
        last_seq: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

pub(crate) fn read_snapshot(
    conn: &Connection,
    projection: Projection,
    key: &str,
) -> Result<Option<Snapshot>> {
    let sql = format!(
        "SELECT {k}, state, event_count, last_seq, updated_at FROM {t} WHERE {k} = ?1",
        k = projection.key_column(),
        t = projection.name()
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([key], snapshot)
        .optional()?)
}

/// As [`read_snapshot`], with the projection's checkpoint `seq`, both from one statement and so
/// one read transaction: the row is what the snapshot table held at that checkpoint. (-1 if the
/// checkpoint row is missing, which the migrations never leave.)
pub(crate) fn read_snapshot_at(
    conn: &Connection,
    projection: Projection,
    key: &str,
) -> Result<(i64, Option<Snapshot>)> {
    let sql = format!(
        "SELECT c.seq, s.{k}, s.state, s.event_count, s.last_seq, s.updated_at
         FROM checkpoints c LEFT JOIN {t} s ON s.{k} = ?2 WHERE c.projection = ?1",
        k = projection.key_column(),
        t = projection.name()
    );
    let found = conn
        .prepare_cached(&sql)?
        .query_row(params![projection.name(), key], |r| {
            let seq: i64 = r.get(0)?;
            let key: Option<String> = r.get(1)?;
            let row = match key {
                None => None,
                Some(key) => Some(Snapshot {
                    key,
                    state: r.get(2)?,
                    event_count: r.get(3)?,
                    last_seq: r.get(4)?,
                    updated_at: r.get(5)?,
                }),
            };
            Ok((seq, row))
        })
        .optional()?;
    Ok(found.unwrap_or((-1, None)))
}

pub(crate) fn read_all(conn: &Connection, projection: Projection) -> Result<Vec<Snapshot>> {
    let sql = format!(
        "SELECT {k}, state, event_count, last_seq, updated_at FROM {t} ORDER BY {k}",
        k = projection.key_column(),
        t = projection.name()
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], snapshot)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn read_journeys(conn: &Connection, f: &JourneyFilter) -> Result<Vec<Snapshot>> {
    let mut sql = String::from(
        "SELECT correlation_id, state, event_count, last_seq, updated_at FROM journeys WHERE 1",
    );
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::new();
    if let Some(s) = &f.status {
        sql.push_str(" AND status = ?");
        args.push(s);
    }
    if let Some(j) = &f.journey_id {
        sql.push_str(" AND journey_id = ?");
        args.push(j);
    }
    if let Some(c) = &f.customer_reference {
        sql.push_str(" AND customer_reference = ?");
        args.push(c);
    }
    if let Some(a) = &f.after {
        sql.push_str(" AND correlation_id > ?");
        args.push(a);
    }
    let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
    sql.push_str(" ORDER BY correlation_id LIMIT ?");
    args.push(&limit);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(args.as_slice(), snapshot)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The columns of one snapshot table, as [`Upsert`] writes them.
struct Shape {
    /// The key column.
    key: &'static str,
    /// Indexed columns that rarely change after a key's first event (all TEXT).
    rare: &'static [&'static str],
    /// The other columns of this shape, which change with nearly every event (then [`COMMON`]).
    frequent: &'static [&'static str],
}

const JOURNEY: Shape = Shape {
    key: "correlation_id",
    rare: &["status", "journey_id", "customer_reference"],
    frequent: &["last_activity"],
};
const MEMBER: Shape = Shape {
    key: "member_guid",
    rare: &["user_guid"],
    frequent: &["connection_status", "last_activity"],
};
const USER: Shape = Shape {
    key: "user_guid",
    rare: &[],
    frequent: &["last_activity"],
};
const RESOURCE: Shape = Shape {
    key: "key",
    rare: &["type", "guid", "user_guid"],
    frequent: &["deleted"],
};
/// The columns every snapshot table ends with, after its shape's frequent ones.
const COMMON: [&str; 4] = ["state", "event_count", "last_seq", "updated_at"];

impl Columns {
    fn shape(&self) -> &'static Shape {
        match self {
            Columns::Journey { .. } => &JOURNEY,
            Columns::Member { .. } => &MEMBER,
            Columns::User { .. } => &USER,
            Columns::Resource { .. } => &RESOURCE,
        }
    }
}

/// A row's values in its shape's order: the rare columns, then the frequent ones and [`COMMON`].
fn values(r: &SnapshotRow) -> (Vec<Option<&str>>, Vec<&dyn rusqlite::ToSql>) {
    let (rare, mut frequent): (Vec<Option<&str>>, Vec<&dyn rusqlite::ToSql>) = match &r.columns {
        Columns::Journey {
            status,
            journey_id,
            customer_reference,
            last_activity,
        } => (
            vec![
                Some(status.as_str()),
                journey_id.as_deref(),
                customer_reference.as_deref(),
            ],
            vec![last_activity],
        ),
        Columns::Member {
            user_guid,
            connection_status,
            last_activity,
        } => (
            vec![user_guid.as_deref()],
            vec![connection_status, last_activity],
        ),
        Columns::User { last_activity } => (Vec::new(), vec![last_activity]),
        Columns::Resource {
            resource_type,
            guid,
            user_guid,
            deleted,
        } => (
            vec![
                Some(resource_type.as_str()),
                Some(guid.as_str()),
                user_guid.as_deref(),
            ],
            vec![deleted],
        ),
    };
    frequent.extend([
        &r.state as &dyn rusqlite::ToSql,
        &r.event_count,
        &r.last_seq,
        &r.updated_at,
    ]);
    (rare, frequent)
}

/// The statements that write one table's snapshots, prepared once for a batch of rows (a
/// statement per row cost a `format!`, a hash of the SQL text and a cache round trip each, a
/// few per cent of the writer thread's time).
///
/// A row is looked up by its key once, then written by rowid with one of three statements: an
/// INSERT for a new key; for an existing one, an UPDATE of the frequent columns, or of every
/// column when a rare one differs. An UPDATE that names an indexed column rewrites that index
/// entry even when the value is the same, and every such page goes to the WAL
/// (docs/BENCHMARKS.md); and naming a journey's `status` fires the counting trigger (migrations
/// 0004 and 0005). The usual update names neither. Every statement runs `OR FAIL`, which the
/// trigger bodies inherit, so nothing in a snapshot write may abort part-way and SQLite keeps
/// no statement journal for it (decision 0015). A failed statement fails the whole transaction.
struct Upsert<'c> {
    /// `None` for a rebuild's own table, every key new: every row is inserted.
    find: Option<CachedStatement<'c>>,
    insert: CachedStatement<'c>,
    update: CachedStatement<'c>,
    update_all: CachedStatement<'c>,
}

impl<'c> Upsert<'c> {
    /// The statements for rows shaped like `columns` in `table`.
    fn prepare(
        tx: &'c Transaction<'_>,
        table: &str,
        columns: &Columns,
        fresh: bool,
    ) -> Result<Self> {
        let shape = columns.shape();
        let frequent: Vec<&str> = shape.frequent.iter().chain(&COMMON).copied().collect();
        let all: Vec<&str> = shape.rare.iter().chain(&frequent).copied().collect();
        let set = |cols: &[&str]| {
            cols.iter()
                .enumerate()
                .map(|(i, c)| format!("{c} = ?{}", i + 2))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find = format!(
            "SELECT rowid{} FROM {table} WHERE {} = ?1",
            shape
                .rare
                .iter()
                .map(|c| format!(", {c}"))
                .collect::<String>(),
            shape.key
        );
        let insert = format!(
            "INSERT OR FAIL INTO {table} ({}, {}) VALUES ({})",
            shape.key,
            all.join(", "),
            (1..=all.len() + 1)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let update = format!(
            "UPDATE OR FAIL {table} SET {} WHERE rowid = ?1",
            set(&frequent)
        );
        let update_all = format!("UPDATE OR FAIL {table} SET {} WHERE rowid = ?1", set(&all));
        Ok(Upsert {
            find: match fresh {
                true => None,
                false => Some(tx.prepare_cached(&find)?),
            },
            insert: tx.prepare_cached(&insert)?,
            update: tx.prepare_cached(&update)?,
            update_all: tx.prepare_cached(&update_all)?,
        })
    }

    /// Writes one snapshot (of the shape the statements were prepared for).
    fn run(&mut self, row: &SnapshotRow) -> Result<()> {
        let (rare, frequent) = values(row);
        let found = match &mut self.find {
            None => None,
            Some(find) => find
                .query_row([&row.key], |stored| {
                    let rowid: i64 = stored.get(0)?;
                    let mut same = true;
                    for (i, value) in rare.iter().enumerate() {
                        same &= stored.get_ref(i + 1)?.as_str_or_null()? == *value;
                    }
                    Ok((rowid, same))
                })
                .optional()?,
        };
        let rare = rare.iter().map(|v| v as &dyn rusqlite::ToSql);
        match found {
            None => {
                let key: &dyn rusqlite::ToSql = &row.key;
                let args: Vec<_> = std::iter::once(key).chain(rare).chain(frequent).collect();
                self.insert.execute(&*args)?
            }
            Some((rowid, same)) => {
                let id: &dyn rusqlite::ToSql = &rowid;
                let args: Vec<_> = match same {
                    true => std::iter::once(id).chain(frequent).collect(),
                    false => std::iter::once(id).chain(rare).chain(frequent).collect(),
                };
                match same {
                    true => self.update.execute(&*args)?,
                    false => self.update_all.execute(&*args)?,
                }
            }
        };
        Ok(())
    }
}

/// Where a row of this shape's statements are kept in a batch's `[Option<Upsert>; 4]`.
fn shape(columns: &Columns) -> usize {
    match columns {
        Columns::Journey { .. } => 0,
        Columns::Member { .. } => 1,
        Columns::User { .. } => 2,
        Columns::Resource { .. } => 3,
    }
}

/// Writes `rows` into their tables (`table(projection)`), preparing each table's statements once.
fn upsert_all<'r>(
    tx: &Transaction<'_>,
    rows: impl IntoIterator<Item = (&'r str, &'r SnapshotRow)>,
    fresh: bool,
) -> Result<()> {
    let mut prepared: [Option<(&str, Upsert<'_>)>; 4] = Default::default();
    for (table, row) in rows {
        let slot = &mut prepared[shape(&row.columns)];
        let upsert = match slot {
            Some((t, upsert)) if *t == table => upsert,
            _ => {
                &mut slot
                    .insert((table, Upsert::prepare(tx, table, &row.columns, fresh)?))
                    .1
            }
        };
        upsert.run(row)?;
    }
    Ok(())
}

pub(crate) fn write_batch(tx: &Transaction<'_>, batch: &ProjectBatch) -> Result<()> {
    for x in &batch.expect {
        let (generation, seq): (i64, i64) = tx
            .prepare_cached("SELECT generation, seq FROM checkpoints WHERE projection = ?1")?
            .query_row([x.projection.name()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if (generation, seq) != (x.generation, x.seq) {
            return Err(Error::Stale {
                projection: x.projection,
            });
        }
    }
    upsert_all(
        tx,
        batch
            .rows
            .iter()
            .map(|(projection, row)| (projection.name(), row)),
        false,
    )?;
    for (projection, seq) in &batch.checkpoints {
        tx.prepare_cached("UPDATE checkpoints SET seq = ?2 WHERE projection = ?1")?
            .execute(params![projection.name(), seq])?;
    }
    Ok(())
}

/// One rebuild in progress: its own table, and the generation it started from. Two rebuilds of
/// one projection never share a table, and only the first to swap wins (the other is refused
/// as stale), so neither can install a table the other partly dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildTicket {
    /// Which projection.
    pub projection: Projection,
    table: String,
    generation: i64,
}

/// The live DDL of `projection`'s table, and of its indexes and triggers, from sqlite_master.
fn table_ddl(tx: &Transaction<'_>, projection: Projection) -> Result<(String, Vec<String>)> {
    let table: String = tx.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [projection.name()],
        |r| r.get(0),
    )?;
    // Indexes first: a trigger's body may rely on them. Triggers include the counting ones of
    // migrations 0004 and 0005 and any an operator added.
    let mut stmt = tx.prepare(
        "SELECT sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name = ?1 AND sql IS NOT NULL
         ORDER BY type = 'trigger', name",
    )?;
    let dependents = stmt
        .query_map([projection.name()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok((table, dependents))
}

fn generation(tx: &Transaction<'_>, projection: Projection) -> Result<i64> {
    Ok(tx.query_row(
        "SELECT generation FROM checkpoints WHERE projection = ?1",
        [projection.name()],
        |r| r.get(0),
    )?)
}

/// Starts a rebuild: an empty table like the live one, without secondary indexes (they are
/// built once, at the swap).
pub(crate) fn rebuild_begin(tx: &Transaction<'_>, projection: Projection) -> Result<RebuildTicket> {
    let (table_sql, _) = table_ddl(tx, projection)?;
    // Everything from the first parenthesis on is the column list and table options. (After a
    // swap, SQLite stores the renamed table's DDL with its name quoted, so the head varies.)
    let Some(open) = table_sql.find('(') else {
        return Err(Error::Sqlite(rusqlite::Error::InvalidColumnName(format!(
            "unexpected DDL for {}: {table_sql}",
            projection.name()
        ))));
    };
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let table = format!("{}_next_{}_{unique}", projection.name(), std::process::id());
    tx.execute_batch(&format!("CREATE TABLE {table} {};", &table_sql[open..]))?;
    Ok(RebuildTicket {
        projection,
        table,
        generation: generation(tx, projection)?,
    })
}

pub(crate) fn rebuild_rows(
    tx: &Transaction<'_>,
    ticket: &RebuildTicket,
    rows: &[SnapshotRow],
) -> Result<()> {
    // Another rebuild's swap dropped this one's table: say so, rather than "no such table".
    if generation(tx, ticket.projection)? != ticket.generation {
        return Err(Error::Stale {
            projection: ticket.projection,
        });
    }
    upsert_all(
        tx,
        rows.iter().map(|row| (ticket.table.as_str(), row)),
        true,
    )
}

/// Swaps the ticket's table in for the live one, with its indexes, and moves the checkpoint, in
/// the caller's transaction: readers see the old table until it commits. Refused as stale if
/// another rebuild swapped first.
pub(crate) fn rebuild_swap(
    tx: &Transaction<'_>,
    ticket: &RebuildTicket,
    seq: i64,
    version: i64,
    fingerprint: &str,
) -> Result<()> {
    let name = ticket.projection.name();
    if generation(tx, ticket.projection)? != ticket.generation {
        return Err(Error::Stale {
            projection: ticket.projection,
        });
    }
    let (_, dependents) = table_ddl(tx, ticket.projection)?;
    tx.execute_batch(&format!(
        "DROP TABLE {name}; ALTER TABLE {} RENAME TO {name};",
        ticket.table
    ))?;
    // The dropped table took its indexes and triggers with it: the new one gets the same.
    for sql in dependents {
        tx.execute_batch(&sql)?;
    }
    recount(tx, ticket.projection)?;
    // Any other rebuild of this projection is stale now: drop its table (it will be refused at
    // its own swap, or fail writing rows), and any left by a rebuild that crashed.
    let orphans: Vec<String> = tx
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?1 ESCAPE '\\'",
        )?
        .query_map([format!("{name}\\_next%")], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for orphan in orphans {
        tx.execute_batch(&format!(
            "DROP TABLE IF EXISTS \"{}\";",
            orphan.replace('"', "")
        ))?;
    }
    tx.prepare_cached(
        "UPDATE checkpoints SET seq = ?2, version = ?3, fingerprint = ?4, generation = generation + 1 WHERE projection = ?1",
    )?
    .execute(params![name, seq, version, fingerprint])?;
    Ok(())
}

/// Counts for `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectionCounts {
    /// Journeys by status.
    pub journeys_by_status: Vec<(String, i64)>,
    /// Members.
    pub members: i64,
    /// Users.
    pub users: i64,
    /// Resources.
    pub resources: i64,
}

pub(crate) fn read_counts(conn: &Connection) -> Result<ProjectionCounts> {
    let mut counts = ProjectionCounts::default();
    let mut stmt = conn.prepare_cached(
        "SELECT projection, status, count FROM snapshot_counts WHERE count <> 0 ORDER BY projection, status",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (projection, status, n): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        match projection.as_str() {
            "journeys" => counts.journeys_by_status.push((status, n)),
            "members" => counts.members += n,
            "users" => counts.users += n,
            "resources" => counts.resources += n,
            _ => {}
        }
    }
    Ok(counts)
}

/// Sets `projection`'s rows of `snapshot_counts` from its table (a rebuild's swap; the
/// triggers of migrations 0004 and 0005 keep them current after that).
fn recount(tx: &Transaction<'_>, projection: Projection) -> Result<()> {
    let name = projection.name();
    // Journeys by status; the others in one row, even when empty.
    let select = match projection {
        Projection::Journeys => "SELECT 'journeys', status, count(*) FROM journeys GROUP BY status",
        _ => &format!("SELECT '{name}', '', count(*) FROM {name}"),
    };
    tx.execute("DELETE FROM snapshot_counts WHERE projection = ?1", [name])?;
    tx.execute_batch(&format!(
        "INSERT INTO snapshot_counts (projection, status, count) {select};"
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value;

    use super::*;

    fn row(key: &str, columns: Columns, n: i64) -> SnapshotRow {
        SnapshotRow {
            key: key.to_owned(),
            columns,
            state: format!("{{\"n\":{n}}}"),
            event_count: n,
            last_seq: 10 * n,
            updated_at: 100 * n,
        }
    }

    fn text(s: Option<&str>) -> Value {
        s.map_or(Value::Null, |s| Value::Text(s.to_owned()))
    }

    fn int(i: Option<i64>) -> Value {
        i.map_or(Value::Null, Value::Integer)
    }

    /// What the table must hold after `r` was written: every column, listed here by hand
    /// rather than through [`Shape`], so that a wrong column list there is caught.
    fn expected(r: &SnapshotRow) -> (&'static str, Vec<Value>) {
        let (sql, mut v) = match &r.columns {
            Columns::Journey {
                status,
                journey_id,
                customer_reference,
                last_activity,
            } => (
                "SELECT correlation_id, status, journey_id, customer_reference, last_activity, state, event_count, last_seq, updated_at FROM journeys WHERE correlation_id = ?1",
                vec![
                    text(Some(status)),
                    text(journey_id.as_deref()),
                    text(customer_reference.as_deref()),
                    int(*last_activity),
                ],
            ),
            Columns::Member {
                user_guid,
                connection_status,
                last_activity,
            } => (
                "SELECT member_guid, user_guid, connection_status, last_activity, state, event_count, last_seq, updated_at FROM members WHERE member_guid = ?1",
                vec![
                    text(user_guid.as_deref()),
                    text(connection_status.as_deref()),
                    int(*last_activity),
                ],
            ),
            Columns::User { last_activity } => (
                "SELECT user_guid, last_activity, state, event_count, last_seq, updated_at FROM users WHERE user_guid = ?1",
                vec![int(*last_activity)],
            ),
            Columns::Resource {
                resource_type,
                guid,
                user_guid,
                deleted,
            } => (
                "SELECT key, type, guid, user_guid, deleted, state, event_count, last_seq, updated_at FROM resources WHERE key = ?1",
                vec![
                    text(Some(resource_type)),
                    text(Some(guid)),
                    text(user_guid.as_deref()),
                    Value::Integer(i64::from(*deleted)),
                ],
            ),
        };
        v.insert(0, Value::Text(r.key.clone()));
        v.extend([
            Value::Text(r.state.clone()),
            Value::Integer(r.event_count),
            Value::Integer(r.last_seq),
            Value::Integer(r.updated_at),
        ]);
        (sql, v)
    }

    /// Whatever changes from one write of a key to the next (an indexed column from a value to
    /// another, to NULL and back, a status, nothing indexed at all, the same key twice in one
    /// batch), the table then holds exactly the last row written, and the counts match it.
    #[test]
    fn every_column_of_every_shape_is_what_was_written_last() {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::migrations().to_latest(&mut conn).expect("schema");
        let journey =
            |status: &str, id: Option<&str>, reference: Option<&str>, at| Columns::Journey {
                status: status.to_owned(),
                journey_id: id.map(str::to_owned),
                customer_reference: reference.map(str::to_owned),
                last_activity: at,
            };
        let member = |user: Option<&str>, connection: Option<&str>, at| Columns::Member {
            user_guid: user.map(str::to_owned),
            connection_status: connection.map(str::to_owned),
            last_activity: at,
        };
        let resource = |kind: &str, guid: &str, user: Option<&str>, deleted| Columns::Resource {
            resource_type: kind.to_owned(),
            guid: guid.to_owned(),
            user_guid: user.map(str::to_owned),
            deleted,
        };
        let batches: Vec<Vec<(Projection, SnapshotRow)>> = vec![
            vec![
                (
                    Projection::Journeys,
                    row("J1", journey("created", None, None, None), 1),
                ),
                (
                    Projection::Journeys,
                    row("J2", journey("paid", Some("2"), Some("AX"), Some(5)), 1),
                ),
                (Projection::Members, row("M1", member(None, None, None), 1)),
                (
                    Projection::Users,
                    row(
                        "U1",
                        Columns::User {
                            last_activity: None,
                        },
                        1,
                    ),
                ),
                (
                    Projection::Resources,
                    row("goal/G1", resource("goal", "G1", None, false), 1),
                ),
            ],
            vec![
                (
                    Projection::Journeys,
                    row("J1", journey("opened", Some("2"), None, Some(2)), 2),
                ),
                (
                    Projection::Journeys,
                    row("J2", journey("paid", Some("2"), Some("AX"), Some(6)), 2),
                ),
                (
                    Projection::Members,
                    row("M1", member(Some("U1"), Some("CONNECTED"), Some(2)), 2),
                ),
                (
                    Projection::Users,
                    row(
                        "U1",
                        Columns::User {
                            last_activity: Some(2),
                        },
                        2,
                    ),
                ),
                (
                    Projection::Resources,
                    row("goal/G1", resource("goal", "G1", Some("U1"), true), 2),
                ),
            ],
            vec![
                (
                    Projection::Journeys,
                    row("J1", journey("paid", Some("3"), Some("AY"), Some(3)), 3),
                ),
                (
                    Projection::Journeys,
                    row("J1", journey("completed", None, Some("AY"), Some(4)), 4),
                ),
                (
                    Projection::Journeys,
                    row("J2", journey("completed", Some("2"), None, Some(7)), 3),
                ),
                (
                    Projection::Members,
                    row("M1", member(Some("U2"), None, Some(3)), 3),
                ),
                (
                    Projection::Resources,
                    row("goal/G1", resource("account", "G2", None, false), 3),
                ),
            ],
        ];
        let mut last: std::collections::BTreeMap<String, SnapshotRow> = Default::default();
        for rows in batches {
            let tx = conn.transaction().expect("begin");
            let batch = ProjectBatch {
                rows,
                ..ProjectBatch::default()
            };
            write_batch(&tx, &batch).expect("write");
            tx.commit().expect("commit");
            for (_, r) in batch.rows {
                last.insert(r.key.clone(), r);
            }
            for r in last.values() {
                let (sql, want) = expected(r);
                let got: Vec<Value> = conn
                    .query_row(sql, [&r.key], |s| {
                        (0..want.len()).map(|i| s.get::<_, Value>(i)).collect()
                    })
                    .expect("the row is there");
                assert_eq!(got, want, "{}", r.key);
            }
            let counts = |sql: &str| -> Vec<(String, String, i64)> {
                conn.prepare(sql)
                    .expect("sql")
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .expect("query")
                    .collect::<rusqlite::Result<_>>()
                    .expect("rows")
            };
            assert_eq!(
                counts(
                    "SELECT projection, status, count FROM snapshot_counts WHERE count > 0 ORDER BY 1, 2"
                ),
                counts(
                    "SELECT 'journeys', status, count(*) FROM journeys GROUP BY status
                     UNION ALL SELECT 'members', '', count(*) FROM members
                     UNION ALL SELECT 'resources', '', count(*) FROM resources
                     UNION ALL SELECT 'users', '', count(*) FROM users ORDER BY 1, 2"
                ),
            );
        }
    }
}
