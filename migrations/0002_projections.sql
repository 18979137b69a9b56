-- Snapshots folded from the log (docs/contract.md sections 5 to 7). Everything here is derived: it can
-- be dropped and rebuilt from `events` at any time (`journeyd rebuild`). A rebuild creates each
-- table again from the definition below (read back from sqlite_master), so this file is the one
-- place the snapshot schema is written.

-- One row per journey instance (correlationId). `state` is the {"correlation_id", ...} document.
CREATE TABLE journeys (
    correlation_id     TEXT    NOT NULL PRIMARY KEY,
    status             TEXT    NOT NULL,          -- created | opened | paid | completed
    journey_id         TEXT,
    customer_reference TEXT,
    last_activity      INTEGER,                   -- last_occurred_at, ms
    state              TEXT    NOT NULL,          -- compact JSON, keys in a fixed order
    event_count        INTEGER NOT NULL,
    last_seq           INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL           -- received_at of the event at last_seq, ms
) STRICT, WITHOUT ROWID;
CREATE INDEX journeys_status ON journeys (status, correlation_id);
CREATE INDEX journeys_journey_id ON journeys (journey_id, correlation_id) WHERE journey_id IS NOT NULL;
CREATE INDEX journeys_customer_reference ON journeys (customer_reference) WHERE customer_reference IS NOT NULL;
CREATE INDEX journeys_last_activity ON journeys (last_activity);

-- One row per MX member (member_guid).
CREATE TABLE members (
    member_guid       TEXT    NOT NULL PRIMARY KEY,
    user_guid         TEXT,
    connection_status TEXT,                       -- latest by arrival
    last_activity     INTEGER,
    state             TEXT    NOT NULL,
    event_count       INTEGER NOT NULL,
    last_seq          INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX members_user_guid ON members (user_guid) WHERE user_guid IS NOT NULL;
CREATE INDEX members_last_activity ON members (last_activity);

-- One row per MX user (user_guid).
CREATE TABLE users (
    user_guid     TEXT    NOT NULL PRIMARY KEY,
    last_activity INTEGER,
    state         TEXT    NOT NULL,
    event_count   INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX users_last_activity ON users (last_activity);

-- One row per MX resource, keyed '{type}/{guid}'.
CREATE TABLE resources (
    key         TEXT    NOT NULL PRIMARY KEY,
    type        TEXT    NOT NULL,
    guid        TEXT    NOT NULL,
    user_guid   TEXT,
    deleted     INTEGER NOT NULL,                 -- 0 | 1
    state       TEXT    NOT NULL,
    event_count INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX resources_user_guid ON resources (user_guid, type) WHERE user_guid IS NOT NULL;

-- How far each projection has folded the log. Written in the same transaction as its snapshots.
-- `version` and `fingerprint` say which code and configuration built the snapshots; a mismatch
-- makes journeyd rebuild that projection. `generation` goes up at every rebuild swap, so a
-- process that cached snapshots notices they were replaced.
CREATE TABLE checkpoints (
    projection  TEXT    NOT NULL PRIMARY KEY,
    seq         INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    fingerprint TEXT    NOT NULL,
    generation  INTEGER NOT NULL
) STRICT;
INSERT INTO checkpoints (projection, seq, version, fingerprint, generation) VALUES
    ('journeys', 0, 0, '', 0), ('members', 0, 0, '', 0), ('users', 0, 0, '', 0), ('resources', 0, 0, '', 0);
