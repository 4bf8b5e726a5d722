-- Analytics read rollups, never `messages`, so an analytics query costs the same at a thousand
-- messages and at ten million. They change in the transaction of what they count: a message's
-- steps are added by the store code that makes them (store::analytics::add_steps: a group of
-- sends is one upsert, where a row trigger would pay two per send), contacts' by the triggers
-- below.
--
-- Buckets are UTC hours (hours since the Unix epoch), each split into four quarter-hour counts:
-- every time zone in use is a whole number of quarter hours from UTC, so a local day or hour of
-- any zone (Kolkata's +05:30, Kathmandu's +05:45, a DST day's 23 or 25 hours) is an exact sum of
-- quarters, while there is still one row per hour.

-- Outbound: sent, delivered, read, failed, each counted in the quarter its time (sent_at, …)
-- falls in. Inbound: received, at the time the person wrote (delivered_at of an inbound row).
CREATE TABLE message_rollups (
    workspace_id  BLOB NOT NULL,
    hour          INTEGER NOT NULL,
    sender_id     BLOB NOT NULL,
    direction     TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    q0            INTEGER NOT NULL,
    q1            INTEGER NOT NULL,
    q2            INTEGER NOT NULL,
    q3            INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, hour, sender_id, direction, outcome)
) WITHOUT ROWID;

-- A campaign's timeline, by UTC minute (minutes since the Unix epoch). Its workspace and sender
-- (the campaign's, so the same on every row) let a trigger carry each change on to
-- `message_rollups`: a group of campaign sends is one upsert here and nothing more from the code.
CREATE TABLE campaign_timeline (
    campaign_id   BLOB NOT NULL,
    minute        INTEGER NOT NULL,
    workspace_id  BLOB NOT NULL,
    sender_id     BLOB NOT NULL,
    sent         INTEGER NOT NULL,
    delivered    INTEGER NOT NULL,
    read         INTEGER NOT NULL,
    failed       INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, minute)
) WITHOUT ROWID;

-- The same counts a level up, so that a long period reads a row a day, not four an hour: by UTC
-- day (days since the epoch), and by hour for the whole workspace (activity of every sender).
CREATE TABLE message_rollups_daily (
    workspace_id  BLOB NOT NULL,
    day           INTEGER NOT NULL,
    sender_id     BLOB NOT NULL,
    direction     TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, day, sender_id, direction, outcome)
) WITHOUT ROWID;

CREATE TABLE workspace_rollups (
    workspace_id  BLOB NOT NULL,
    hour          INTEGER NOT NULL,
    direction     TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    q0            INTEGER NOT NULL,
    q1            INTEGER NOT NULL,
    q2            INTEGER NOT NULL,
    q3            INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, hour, direction, outcome)
) WITHOUT ROWID;

-- A campaign's timeline by UTC hour (hours since the epoch), for campaigns that run for days.
CREATE TABLE campaign_timeline_hourly (
    campaign_id  BLOB NOT NULL,
    hour         INTEGER NOT NULL,
    sent         INTEGER NOT NULL,
    delivered    INTEGER NOT NULL,
    read         INTEGER NOT NULL,
    failed       INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, hour)
) WITHOUT ROWID;

-- Contacts created and opted out, by the hour of created_at and opted_out_at. A contact that opts
-- back in, or is deleted, leaves the buckets it was counted in.
CREATE TABLE contact_rollups (
    workspace_id  BLOB NOT NULL,
    hour          INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    q0            INTEGER NOT NULL,
    q1            INTEGER NOT NULL,
    q2            INTEGER NOT NULL,
    q3            INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, hour, outcome)
) WITHOUT ROWID;

-- A workspace's contacts now: the overview is one row, whatever the list's size.
CREATE TABLE contact_totals (
    workspace_id  BLOB PRIMARY KEY,
    total         INTEGER NOT NULL,
    opted_out     INTEGER NOT NULL,
    blocked       INTEGER NOT NULL
) WITHOUT ROWID;

-- Campaigns by when they started, for the campaigns of a period.
CREATE INDEX campaigns_workspace_started ON campaigns (workspace_id, started_at);

-- Contacts: +1 where a time appears, -1 where it goes (opt-in, deletion).
CREATE TRIGGER contacts_rollups_insert AFTER INSERT ON contacts
BEGIN
    INSERT INTO contact_rollups (workspace_id, hour, outcome, q0, q1, q2, q3)
    SELECT NEW.workspace_id, at / 3600, outcome,
           (at % 3600) / 900 = 0, (at % 3600) / 900 = 1, (at % 3600) / 900 = 2,
           (at % 3600) / 900 = 3
    FROM (SELECT 'created' AS outcome, unixepoch(NEW.created_at) AS at
          UNION ALL SELECT 'opted_out', unixepoch(NEW.opted_out_at))
    WHERE at IS NOT NULL
    ON CONFLICT DO UPDATE SET q0 = q0 + excluded.q0, q1 = q1 + excluded.q1,
                              q2 = q2 + excluded.q2, q3 = q3 + excluded.q3;
    INSERT INTO contact_totals (workspace_id, total, opted_out, blocked)
    VALUES (NEW.workspace_id, 1, NEW.opted_out_at IS NOT NULL, NEW.blocked <> 0)
    ON CONFLICT DO UPDATE SET total = total + 1, opted_out = opted_out + excluded.opted_out,
                              blocked = blocked + excluded.blocked;
END;

CREATE TRIGGER contacts_rollups_update AFTER UPDATE OF opted_out_at, blocked ON contacts
WHEN NEW.opted_out_at IS NOT OLD.opted_out_at OR NEW.blocked IS NOT OLD.blocked
BEGIN
    UPDATE contact_rollups
    SET q0 = q0 - ((at % 3600) / 900 = 0), q1 = q1 - ((at % 3600) / 900 = 1),
        q2 = q2 - ((at % 3600) / 900 = 2), q3 = q3 - ((at % 3600) / 900 = 3)
    FROM (SELECT unixepoch(OLD.opted_out_at) AS at)
    WHERE OLD.opted_out_at IS NOT NEW.opted_out_at AND at IS NOT NULL
          AND workspace_id = OLD.workspace_id AND hour = at / 3600 AND outcome = 'opted_out';
    INSERT INTO contact_rollups (workspace_id, hour, outcome, q0, q1, q2, q3)
    SELECT NEW.workspace_id, at / 3600, 'opted_out',
           (at % 3600) / 900 = 0, (at % 3600) / 900 = 1, (at % 3600) / 900 = 2,
           (at % 3600) / 900 = 3
    FROM (SELECT unixepoch(NEW.opted_out_at) AS at)
    WHERE OLD.opted_out_at IS NOT NEW.opted_out_at AND at IS NOT NULL
    ON CONFLICT DO UPDATE SET q0 = q0 + excluded.q0, q1 = q1 + excluded.q1,
                              q2 = q2 + excluded.q2, q3 = q3 + excluded.q3;
    UPDATE contact_totals
    SET opted_out = opted_out + (NEW.opted_out_at IS NOT NULL) - (OLD.opted_out_at IS NOT NULL),
        blocked = blocked + (NEW.blocked <> 0) - (OLD.blocked <> 0)
    WHERE workspace_id = NEW.workspace_id;
END;

CREATE TRIGGER contacts_rollups_delete AFTER DELETE ON contacts
BEGIN
    UPDATE contact_rollups
    SET q0 = q0 - ((at % 3600) / 900 = 0), q1 = q1 - ((at % 3600) / 900 = 1),
        q2 = q2 - ((at % 3600) / 900 = 2), q3 = q3 - ((at % 3600) / 900 = 3)
    FROM (SELECT 'created' AS kind, unixepoch(OLD.created_at) AS at
          UNION ALL SELECT 'opted_out', unixepoch(OLD.opted_out_at)) AS gone
    WHERE gone.at IS NOT NULL AND workspace_id = OLD.workspace_id AND hour = gone.at / 3600
          AND outcome = gone.kind;
    UPDATE contact_totals
    SET total = total - 1, opted_out = opted_out - (OLD.opted_out_at IS NOT NULL),
        blocked = blocked - (OLD.blocked <> 0)
    WHERE workspace_id = OLD.workspace_id;
END;

-- What exists already.
INSERT INTO message_rollups (workspace_id, hour, sender_id, direction, outcome, q0, q1, q2, q3)
SELECT workspace_id, at / 3600, sender_id, direction, outcome,
       SUM((at % 3600) / 900 = 0), SUM((at % 3600) / 900 = 1), SUM((at % 3600) / 900 = 2),
       SUM((at % 3600) / 900 = 3)
FROM (SELECT workspace_id, sender_id, direction, 'sent' AS outcome, unixepoch(sent_at) AS at
      FROM messages WHERE direction = 'outbound' AND sent_at IS NOT NULL
      UNION ALL
      SELECT workspace_id, sender_id, direction, 'delivered', unixepoch(delivered_at)
      FROM messages WHERE direction = 'outbound' AND delivered_at IS NOT NULL
      UNION ALL
      SELECT workspace_id, sender_id, direction, 'read', unixepoch(read_at)
      FROM messages WHERE direction = 'outbound' AND read_at IS NOT NULL
      UNION ALL
      SELECT workspace_id, sender_id, direction, 'failed', unixepoch(failed_at)
      FROM messages WHERE direction = 'outbound' AND failed_at IS NOT NULL
      UNION ALL
      SELECT workspace_id, sender_id, direction, 'received',
             unixepoch(COALESCE(delivered_at, created_at))
      FROM messages WHERE direction = 'inbound')
-- A time that does not parse (never written by Herald) counts nowhere.
WHERE at IS NOT NULL
GROUP BY workspace_id, at / 3600, sender_id, direction, outcome;

INSERT INTO campaign_timeline (campaign_id, minute, workspace_id, sender_id, sent, delivered, read,
                               failed)
SELECT campaign_id, at / 60, workspace_id, sender_id, SUM(outcome = 'sent'),
       SUM(outcome = 'delivered'), SUM(outcome = 'read'), SUM(outcome = 'failed')
FROM (SELECT campaign_id, workspace_id, sender_id, 'sent' AS outcome, unixepoch(sent_at) AS at
      FROM messages WHERE campaign_id IS NOT NULL AND sent_at IS NOT NULL
      UNION ALL
      SELECT campaign_id, workspace_id, sender_id, 'delivered', unixepoch(delivered_at)
      FROM messages WHERE campaign_id IS NOT NULL AND delivered_at IS NOT NULL
      UNION ALL
      SELECT campaign_id, workspace_id, sender_id, 'read', unixepoch(read_at)
      FROM messages WHERE campaign_id IS NOT NULL AND read_at IS NOT NULL
      UNION ALL
      SELECT campaign_id, workspace_id, sender_id, 'failed', unixepoch(failed_at)
      FROM messages WHERE campaign_id IS NOT NULL AND failed_at IS NOT NULL)
-- A time that does not parse (never written by Herald) counts nowhere.
WHERE at IS NOT NULL
GROUP BY campaign_id, at / 60, workspace_id, sender_id;

INSERT INTO contact_rollups (workspace_id, hour, outcome, q0, q1, q2, q3)
SELECT workspace_id, at / 3600, outcome,
       SUM((at % 3600) / 900 = 0), SUM((at % 3600) / 900 = 1), SUM((at % 3600) / 900 = 2),
       SUM((at % 3600) / 900 = 3)
FROM (SELECT workspace_id, 'created' AS outcome, unixepoch(created_at) AS at FROM contacts
      UNION ALL
      SELECT workspace_id, 'opted_out', unixepoch(opted_out_at) FROM contacts
      WHERE opted_out_at IS NOT NULL)
-- A time that does not parse (never written by Herald) counts nowhere.
WHERE at IS NOT NULL
GROUP BY workspace_id, at / 3600, outcome;

INSERT INTO contact_totals (workspace_id, total, opted_out, blocked)
SELECT workspace_id, COUNT(*), SUM(opted_out_at IS NOT NULL), SUM(blocked <> 0)
FROM contacts GROUP BY workspace_id;

INSERT INTO message_rollups_daily (workspace_id, day, sender_id, direction, outcome, count)
SELECT workspace_id, hour / 24, sender_id, direction, outcome, SUM(q0 + q1 + q2 + q3)
FROM message_rollups GROUP BY workspace_id, hour / 24, sender_id, direction, outcome;

INSERT INTO workspace_rollups (workspace_id, hour, direction, outcome, q0, q1, q2, q3)
SELECT workspace_id, hour, direction, outcome, SUM(q0), SUM(q1), SUM(q2), SUM(q3)
FROM message_rollups GROUP BY workspace_id, hour, direction, outcome;

INSERT INTO campaign_timeline_hourly (campaign_id, hour, sent, delivered, read, failed)
SELECT campaign_id, minute / 60, SUM(sent), SUM(delivered), SUM(read), SUM(failed)
FROM campaign_timeline GROUP BY campaign_id, minute / 60;

-- The rollups a level up follow the hourly ones: a trigger on each rollup row moves them,
-- once per row a group of sends changes (not once per send), in the same statement. Created
-- after the backfill above, which fills both levels itself.
CREATE TRIGGER message_rollups_inserted AFTER INSERT ON message_rollups
BEGIN
    INSERT INTO message_rollups_daily (workspace_id, day, sender_id, direction, outcome, count)
    VALUES (NEW.workspace_id, NEW.hour / 24, NEW.sender_id, NEW.direction, NEW.outcome,
            NEW.q0 + NEW.q1 + NEW.q2 + NEW.q3)
    ON CONFLICT DO UPDATE SET count = count + excluded.count;
    INSERT INTO workspace_rollups (workspace_id, hour, direction, outcome, q0, q1, q2, q3)
    VALUES (NEW.workspace_id, NEW.hour, NEW.direction, NEW.outcome, NEW.q0, NEW.q1, NEW.q2, NEW.q3)
    ON CONFLICT DO UPDATE SET q0 = q0 + excluded.q0, q1 = q1 + excluded.q1,
                              q2 = q2 + excluded.q2, q3 = q3 + excluded.q3;
END;

CREATE TRIGGER message_rollups_updated AFTER UPDATE ON message_rollups
BEGIN
    UPDATE message_rollups_daily
    SET count = count + (NEW.q0 + NEW.q1 + NEW.q2 + NEW.q3) - (OLD.q0 + OLD.q1 + OLD.q2 + OLD.q3)
    WHERE workspace_id = NEW.workspace_id AND day = NEW.hour / 24 AND sender_id = NEW.sender_id
          AND direction = NEW.direction AND outcome = NEW.outcome;
    UPDATE workspace_rollups
    SET q0 = q0 + NEW.q0 - OLD.q0, q1 = q1 + NEW.q1 - OLD.q1, q2 = q2 + NEW.q2 - OLD.q2,
        q3 = q3 + NEW.q3 - OLD.q3
    WHERE workspace_id = NEW.workspace_id AND hour = NEW.hour AND direction = NEW.direction
          AND outcome = NEW.outcome;
END;

CREATE TRIGGER campaign_timeline_inserted AFTER INSERT ON campaign_timeline
BEGIN
    INSERT INTO message_rollups (workspace_id, hour, sender_id, direction, outcome, q0, q1, q2, q3)
    SELECT NEW.workspace_id, NEW.minute / 60, NEW.sender_id, 'outbound', outcome,
           n * (q = 0), n * (q = 1), n * (q = 2), n * (q = 3)
    FROM (SELECT 'sent' AS outcome, NEW.sent AS n, (NEW.minute % 60) / 15 AS q
          UNION ALL SELECT 'delivered', NEW.delivered, (NEW.minute % 60) / 15
          UNION ALL SELECT 'read', NEW.read, (NEW.minute % 60) / 15
          UNION ALL SELECT 'failed', NEW.failed, (NEW.minute % 60) / 15)
    WHERE n <> 0
    ON CONFLICT DO UPDATE SET q0 = q0 + excluded.q0, q1 = q1 + excluded.q1,
                              q2 = q2 + excluded.q2, q3 = q3 + excluded.q3;
    INSERT INTO campaign_timeline_hourly (campaign_id, hour, sent, delivered, read, failed)
    VALUES (NEW.campaign_id, NEW.minute / 60, NEW.sent, NEW.delivered, NEW.read, NEW.failed)
    ON CONFLICT DO UPDATE SET sent = sent + excluded.sent, delivered = delivered + excluded.delivered,
                              read = read + excluded.read, failed = failed + excluded.failed;
END;

CREATE TRIGGER campaign_timeline_updated AFTER UPDATE ON campaign_timeline
BEGIN
    INSERT INTO message_rollups (workspace_id, hour, sender_id, direction, outcome, q0, q1, q2, q3)
    SELECT NEW.workspace_id, NEW.minute / 60, NEW.sender_id, 'outbound', outcome,
           n * (q = 0), n * (q = 1), n * (q = 2), n * (q = 3)
    FROM (SELECT 'sent' AS outcome, NEW.sent - OLD.sent AS n, (NEW.minute % 60) / 15 AS q
          UNION ALL SELECT 'delivered', NEW.delivered - OLD.delivered, (NEW.minute % 60) / 15
          UNION ALL SELECT 'read', NEW.read - OLD.read, (NEW.minute % 60) / 15
          UNION ALL SELECT 'failed', NEW.failed - OLD.failed, (NEW.minute % 60) / 15)
    WHERE n <> 0
    ON CONFLICT DO UPDATE SET q0 = q0 + excluded.q0, q1 = q1 + excluded.q1,
                              q2 = q2 + excluded.q2, q3 = q3 + excluded.q3;
    UPDATE campaign_timeline_hourly
    SET sent = sent + NEW.sent - OLD.sent, delivered = delivered + NEW.delivered - OLD.delivered,
        read = read + NEW.read - OLD.read, failed = failed + NEW.failed - OLD.failed
    WHERE campaign_id = NEW.campaign_id AND hour = NEW.minute / 60;
END;
