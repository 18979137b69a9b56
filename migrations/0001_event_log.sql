-- journeyd event log: the source of truth (docs/contract.md section 5).
-- Applied once, in one transaction, tracked by PRAGMA user_version. Never edit an applied
-- migration: add a new numbered file.

-- One row per request body received (HTTP delivery, imported body, quarantine replay).
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    received_at      INTEGER NOT NULL,          -- ms since the Unix epoch
    source           TEXT    NOT NULL,          -- 'mx' | 'mobile-journeys'
    request_id       TEXT,                      -- HTTP request id, or 'import:FILE:LINE', 'replay:ID'
    size             INTEGER NOT NULL,          -- body bytes
    events_new       INTEGER NOT NULL,
    events_duplicate INTEGER NOT NULL,
    quarantine_id    INTEGER                    -- set when the body went to quarantine
) STRICT;

-- Append-only: the triggers below make UPDATE and DELETE fail.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY,         -- arrival order
    event_id       BLOB    NOT NULL,            -- UUIDv5, 16 bytes
    source         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    correlation_id TEXT,                        -- stream keys, NULL when not applicable
    member_guid    TEXT,
    user_guid      TEXT,
    resource_key   TEXT,                        -- '{type}/{guid}'
    clock          INTEGER,                     -- ms time, or revision (kind 'resource'); NULL: arrival or none
    occurred_at    INTEGER,                     -- ms; for resources, updated_at
    received_at    INTEGER NOT NULL,            -- ms
    delivery_id    INTEGER NOT NULL,
    payload        TEXT    NOT NULL             -- the event's exact bytes as received (UTF-8 JSON)
) STRICT;

-- Identity: each event_id once. `clock` is a pure function of the content the id is computed
-- over, so this index is unique exactly when event_id is; leading with the clock puts
-- time-ordered arrivals at the right edge of the index instead of on a random page, which is
-- most of the cost of an append (docs/decisions/0005-identity-index.md).
CREATE UNIQUE INDEX events_identity ON events (coalesce(clock, -1), event_id);
CREATE INDEX events_correlation_id ON events (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_member_guid ON events (member_guid) WHERE member_guid IS NOT NULL;
CREATE INDEX events_user_guid ON events (user_guid) WHERE user_guid IS NOT NULL;
CREATE INDEX events_resource_key ON events (resource_key) WHERE resource_key IS NOT NULL;

CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;

-- Counts by (source, kind), kept by the writer in the same transaction as the events so that
-- stats are O(1). Derived: `SELECT source, kind, count(*) FROM events GROUP BY 1, 2` rebuilds it.
CREATE TABLE event_counts (
    source TEXT    NOT NULL,
    kind   TEXT    NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (source, kind)
) STRICT, WITHOUT ROWID;

-- Bodies that could not be split into events, kept whole until a replay moves them to the log.
-- A redelivery of the same bytes from the same source is counted on the existing row.
CREATE TABLE quarantine (
    id               INTEGER PRIMARY KEY,
    body_id          BLOB    NOT NULL UNIQUE,   -- UUIDv5 over (source, exact bytes)
    received_at      INTEGER NOT NULL,          -- first received, ms
    last_received_at INTEGER NOT NULL,
    times_received   INTEGER NOT NULL DEFAULT 1,
    source           TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    headers          TEXT    NOT NULL DEFAULT '{}',  -- selected request headers, a JSON object
    body             BLOB    NOT NULL
) STRICT;
