-- Snapshot counts kept by SQLite itself, so that `GET /v1/stats` reads a handful of rows instead
-- of scanning every snapshot table's index (about 40 ms with 500k journeys, on every poll of
-- every dashboard). Decision 0014.
--
-- One row per projection and, for journeys, per status (`status` is '' for the other three).
-- Triggers on the live tables keep the rows current in the same transaction as the snapshot
-- writes, whichever process writes them (the daemon, `import`, a second daemon's rebuild). A
-- rebuild fills a new table that has no triggers yet; its swap re-creates the triggers on the
-- swapped-in table and recounts that projection in the swap's transaction.
--
-- Rows can reach 0 and stay; readers leave out zero counts.

CREATE TABLE snapshot_counts (
    projection TEXT    NOT NULL,                  -- journeys | members | users | resources
    status     TEXT    NOT NULL,                  -- a journey status; '' for the other three
    count      INTEGER NOT NULL,
    PRIMARY KEY (projection, status)
) STRICT, WITHOUT ROWID;

INSERT INTO snapshot_counts (projection, status, count)
    SELECT 'journeys', status, count(*) FROM journeys GROUP BY status;
INSERT INTO snapshot_counts (projection, status, count)
    SELECT 'members', '', count(*) FROM members;
INSERT INTO snapshot_counts (projection, status, count)
    SELECT 'users', '', count(*) FROM users;
INSERT INTO snapshot_counts (projection, status, count)
    SELECT 'resources', '', count(*) FROM resources;

CREATE TRIGGER journeys_counted_insert AFTER INSERT ON journeys BEGIN
    INSERT INTO snapshot_counts (projection, status, count) VALUES ('journeys', new.status, 1)
        ON CONFLICT (projection, status) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER journeys_counted_delete AFTER DELETE ON journeys BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'journeys' AND status = old.status;
END;
CREATE TRIGGER journeys_counted_status AFTER UPDATE OF status ON journeys
WHEN old.status IS NOT new.status BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'journeys' AND status = old.status;
    INSERT INTO snapshot_counts (projection, status, count) VALUES ('journeys', new.status, 1)
        ON CONFLICT (projection, status) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER members_counted_insert AFTER INSERT ON members BEGIN
    INSERT INTO snapshot_counts (projection, status, count) VALUES ('members', '', 1)
        ON CONFLICT (projection, status) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER members_counted_delete AFTER DELETE ON members BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'members' AND status = '';
END;
CREATE TRIGGER users_counted_insert AFTER INSERT ON users BEGIN
    INSERT INTO snapshot_counts (projection, status, count) VALUES ('users', '', 1)
        ON CONFLICT (projection, status) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER users_counted_delete AFTER DELETE ON users BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'users' AND status = '';
END;
CREATE TRIGGER resources_counted_insert AFTER INSERT ON resources BEGIN
    INSERT INTO snapshot_counts (projection, status, count) VALUES ('resources', '', 1)
        ON CONFLICT (projection, status) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER resources_counted_delete AFTER DELETE ON resources BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'resources' AND status = '';
END;
