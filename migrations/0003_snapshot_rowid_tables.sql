-- The snapshot tables become rowid tables with a unique key (decision 0012). Same columns, same
-- data, same index names.
--
-- Why: in a WITHOUT ROWID table the whole row lives in the primary-key B-tree, where SQLite keeps
-- at most about 1,000 bytes of a row on the leaf page (with 4 KiB pages) and moves the rest to an
-- overflow page. A completed journey's row is about 1.5 kB, so every update of it rewrote a leaf,
-- an overflow page and the free list: about twice the pages, and twice the WAL, of the same
-- update in a rowid table, whose leaves hold rows of up to 4,061 bytes. The unique index on the
-- key is read on an update and written only when a key is new.
--
-- `journeys_customer_reference` now carries the key, so a page of journeys filtered by customer
-- reference is read in key order, as the old table's index did implicitly (a rowid table's
-- index entries end with the rowid, not the key). The other indexes are as in 0002. This file
-- and 0002 together are the snapshot schema; a rebuild copies the live tables' DDL.

CREATE TABLE journeys_0003 (
    correlation_id     TEXT    NOT NULL UNIQUE,
    status             TEXT    NOT NULL,          -- created | opened | paid | completed
    journey_id         TEXT,
    customer_reference TEXT,
    last_activity      INTEGER,                   -- last_occurred_at, ms
    state              TEXT    NOT NULL,          -- compact JSON, keys in a fixed order
    event_count        INTEGER NOT NULL,
    last_seq           INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL           -- received_at of the event at last_seq, ms
) STRICT;
INSERT INTO journeys_0003 (correlation_id, status, journey_id, customer_reference, last_activity,
                           state, event_count, last_seq, updated_at)
    SELECT correlation_id, status, journey_id, customer_reference, last_activity,
           state, event_count, last_seq, updated_at
    FROM journeys ORDER BY correlation_id;
DROP TABLE journeys;
ALTER TABLE journeys_0003 RENAME TO journeys;
CREATE INDEX journeys_status ON journeys (status, correlation_id);
CREATE INDEX journeys_journey_id ON journeys (journey_id, correlation_id) WHERE journey_id IS NOT NULL;
CREATE INDEX journeys_customer_reference ON journeys (customer_reference, correlation_id) WHERE customer_reference IS NOT NULL;
CREATE INDEX journeys_last_activity ON journeys (last_activity);

CREATE TABLE members_0003 (
    member_guid       TEXT    NOT NULL UNIQUE,
    user_guid         TEXT,
    connection_status TEXT,                       -- latest by arrival
    last_activity     INTEGER,
    state             TEXT    NOT NULL,
    event_count       INTEGER NOT NULL,
    last_seq          INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;
INSERT INTO members_0003 (member_guid, user_guid, connection_status, last_activity,
                          state, event_count, last_seq, updated_at)
    SELECT member_guid, user_guid, connection_status, last_activity,
           state, event_count, last_seq, updated_at
    FROM members ORDER BY member_guid;
DROP TABLE members;
ALTER TABLE members_0003 RENAME TO members;
CREATE INDEX members_user_guid ON members (user_guid) WHERE user_guid IS NOT NULL;
CREATE INDEX members_last_activity ON members (last_activity);

CREATE TABLE users_0003 (
    user_guid     TEXT    NOT NULL UNIQUE,
    last_activity INTEGER,
    state         TEXT    NOT NULL,
    event_count   INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
INSERT INTO users_0003 (user_guid, last_activity, state, event_count, last_seq, updated_at)
    SELECT user_guid, last_activity, state, event_count, last_seq, updated_at
    FROM users ORDER BY user_guid;
DROP TABLE users;
ALTER TABLE users_0003 RENAME TO users;
CREATE INDEX users_last_activity ON users (last_activity);

CREATE TABLE resources_0003 (
    key         TEXT    NOT NULL UNIQUE,
    type        TEXT    NOT NULL,
    guid        TEXT    NOT NULL,
    user_guid   TEXT,
    deleted     INTEGER NOT NULL,                 -- 0 | 1
    state       TEXT    NOT NULL,
    event_count INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
INSERT INTO resources_0003 (key, type, guid, user_guid, deleted, state, event_count, last_seq, updated_at)
    SELECT key, type, guid, user_guid, deleted, state, event_count, last_seq, updated_at
    FROM resources ORDER BY key;
DROP TABLE resources;
ALTER TABLE resources_0003 RENAME TO resources;
CREATE INDEX resources_user_guid ON resources (user_guid, type) WHERE user_guid IS NOT NULL;
