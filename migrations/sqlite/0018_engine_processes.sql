-- The engine processes sharing this database, each saying it is alive every tick: a process
-- counts the live ones to take only its fair share of the senders with work (⌈S/N⌉ lanes), and
-- hands the rest to the others. A process that stops deletes its row; one that dies is no
-- longer counted once its row is a lease old.
CREATE TABLE engine_processes (
    owner       TEXT PRIMARY KEY,      -- as in sender_lanes.owner
    started_at  TEXT NOT NULL,
    seen_at     TEXT NOT NULL
) WITHOUT ROWID;
