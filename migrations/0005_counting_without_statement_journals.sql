-- The counting triggers of migration 0004, rewritten so that a snapshot write needs no statement
-- journal (decision 0015).
--
-- SQLite keeps a statement journal (a copy of every page the statement changes, so that it can
-- undo that one statement) for a statement that fires triggers and may abort part-way. A trigger
-- body with `ON CONFLICT ... DO UPDATE` always may (SQLite runs its update part with ABORT,
-- whatever the outer statement says), and the journal cost the writer about 5% of its time
-- under load: every new snapshot and every journey status change paid it. These bodies add a
-- missing row with an INSERT that cannot conflict, then update it; the writer runs its snapshot
-- statements with `OR FAIL`, which the bodies inherit, so nothing in them may abort. A failed
-- statement still fails the writer's whole transaction, which is rolled back.
--
-- The counts and their meaning do not change. They are recounted here all the same: a process
-- older than migration 0004 that rebuilt a projection after another process had migrated the
-- file swapped in a table without its counting triggers (docs/operations.md, "Upgrading"), and
-- then those counts went stale. So the triggers are dropped only if they exist, and the counts
-- are filled anew from the tables, as migration 0004 did (one scan of each table).

DROP TRIGGER IF EXISTS journeys_counted_insert;
DROP TRIGGER IF EXISTS journeys_counted_delete;
DROP TRIGGER IF EXISTS journeys_counted_status;
DROP TRIGGER IF EXISTS members_counted_insert;
DROP TRIGGER IF EXISTS members_counted_delete;
DROP TRIGGER IF EXISTS users_counted_insert;
DROP TRIGGER IF EXISTS users_counted_delete;
DROP TRIGGER IF EXISTS resources_counted_insert;
DROP TRIGGER IF EXISTS resources_counted_delete;

DELETE FROM snapshot_counts;
INSERT INTO snapshot_counts (projection, status, count)
    SELECT 'journeys', status, count(*) FROM journeys GROUP BY status;
INSERT INTO snapshot_counts (projection, status, count)
    SELECT 'members', '', count(*) FROM members;
INSERT INTO snapshot_counts (projection, status, count)
    SELECT 'users', '', count(*) FROM users;
INSERT INTO snapshot_counts (projection, status, count)
    SELECT 'resources', '', count(*) FROM resources;

CREATE TRIGGER journeys_counted_insert AFTER INSERT ON journeys BEGIN
    INSERT INTO snapshot_counts (projection, status, count) SELECT 'journeys', new.status, 0
        WHERE NOT EXISTS (SELECT 1 FROM snapshot_counts WHERE projection = 'journeys' AND status = new.status);
    UPDATE snapshot_counts SET count = count + 1 WHERE projection = 'journeys' AND status = new.status;
END;
CREATE TRIGGER journeys_counted_delete AFTER DELETE ON journeys BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'journeys' AND status = old.status;
END;
CREATE TRIGGER journeys_counted_status AFTER UPDATE OF status ON journeys
WHEN old.status IS NOT new.status BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'journeys' AND status = old.status;
    INSERT INTO snapshot_counts (projection, status, count) SELECT 'journeys', new.status, 0
        WHERE NOT EXISTS (SELECT 1 FROM snapshot_counts WHERE projection = 'journeys' AND status = new.status);
    UPDATE snapshot_counts SET count = count + 1 WHERE projection = 'journeys' AND status = new.status;
END;

CREATE TRIGGER members_counted_insert AFTER INSERT ON members BEGIN
    INSERT INTO snapshot_counts (projection, status, count) SELECT 'members', '', 0
        WHERE NOT EXISTS (SELECT 1 FROM snapshot_counts WHERE projection = 'members' AND status = '');
    UPDATE snapshot_counts SET count = count + 1 WHERE projection = 'members' AND status = '';
END;
CREATE TRIGGER members_counted_delete AFTER DELETE ON members BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'members' AND status = '';
END;
CREATE TRIGGER users_counted_insert AFTER INSERT ON users BEGIN
    INSERT INTO snapshot_counts (projection, status, count) SELECT 'users', '', 0
        WHERE NOT EXISTS (SELECT 1 FROM snapshot_counts WHERE projection = 'users' AND status = '');
    UPDATE snapshot_counts SET count = count + 1 WHERE projection = 'users' AND status = '';
END;
CREATE TRIGGER users_counted_delete AFTER DELETE ON users BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'users' AND status = '';
END;
CREATE TRIGGER resources_counted_insert AFTER INSERT ON resources BEGIN
    INSERT INTO snapshot_counts (projection, status, count) SELECT 'resources', '', 0
        WHERE NOT EXISTS (SELECT 1 FROM snapshot_counts WHERE projection = 'resources' AND status = '');
    UPDATE snapshot_counts SET count = count + 1 WHERE projection = 'resources' AND status = '';
END;
CREATE TRIGGER resources_counted_delete AFTER DELETE ON resources BEGIN
    UPDATE snapshot_counts SET count = count - 1 WHERE projection = 'resources' AND status = '';
END;
