-- Bodies an operator judged to be garbage (`journeyd quarantine discard ID --note TEXT`): moved
-- here from `quarantine`, whole, with when and why, so that no byte is lost and the judgement is
-- on record. A discarded body is not listed with the quarantine, not counted in its stats and
-- not replayed. The same bytes received again go to quarantine anew.
CREATE TABLE quarantine_discarded (
    id               INTEGER PRIMARY KEY,        -- the quarantine id it had
    body_id          BLOB    NOT NULL,
    received_at      INTEGER NOT NULL,
    last_received_at INTEGER NOT NULL,
    times_received   INTEGER NOT NULL,
    source           TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    headers          TEXT    NOT NULL,
    body             BLOB    NOT NULL,
    discarded_at     INTEGER NOT NULL,           -- ms
    note             TEXT    NOT NULL
) STRICT;
