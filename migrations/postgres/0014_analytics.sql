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
    workspace_id  UUID NOT NULL,
    hour          BIGINT NOT NULL,
    sender_id     UUID NOT NULL,
    direction     TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    q0            BIGINT NOT NULL,
    q1            BIGINT NOT NULL,
    q2            BIGINT NOT NULL,
    q3            BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, hour, sender_id, direction, outcome)
);

-- A campaign's timeline, by UTC minute (minutes since the Unix epoch). Its workspace and sender
-- (the campaign's, so the same on every row) let a trigger carry each change on to
-- `message_rollups`: a group of campaign sends is one upsert here and nothing more from the code.
CREATE TABLE campaign_timeline (
    campaign_id   UUID NOT NULL,
    minute        BIGINT NOT NULL,
    workspace_id  UUID NOT NULL,
    sender_id     UUID NOT NULL,
    sent         BIGINT NOT NULL,
    delivered    BIGINT NOT NULL,
    read         BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, minute)
);

-- The same counts a level up, so that a long period reads a row a day, not four an hour: by UTC
-- day (days since the epoch), and by hour for the whole workspace (activity of every sender).
CREATE TABLE message_rollups_daily (
    workspace_id  UUID NOT NULL,
    day           BIGINT NOT NULL,
    sender_id     UUID NOT NULL,
    direction     TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    count         BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, day, sender_id, direction, outcome)
);

CREATE TABLE workspace_rollups (
    workspace_id  UUID NOT NULL,
    hour          BIGINT NOT NULL,
    direction     TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    q0            BIGINT NOT NULL,
    q1            BIGINT NOT NULL,
    q2            BIGINT NOT NULL,
    q3            BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, hour, direction, outcome)
);

-- A campaign's timeline by UTC hour (hours since the epoch), for campaigns that run for days.
CREATE TABLE campaign_timeline_hourly (
    campaign_id  UUID NOT NULL,
    hour         BIGINT NOT NULL,
    sent         BIGINT NOT NULL,
    delivered    BIGINT NOT NULL,
    read         BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, hour)
);

-- Contacts created and opted out, by the hour of created_at and opted_out_at. A contact that opts
-- back in, or is deleted, leaves the buckets it was counted in.
CREATE TABLE contact_rollups (
    workspace_id  UUID NOT NULL,
    hour          BIGINT NOT NULL,
    outcome       TEXT NOT NULL,
    q0            BIGINT NOT NULL,
    q1            BIGINT NOT NULL,
    q2            BIGINT NOT NULL,
    q3            BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, hour, outcome)
);

-- A workspace's contacts now: the overview is one row, whatever the list's size.
CREATE TABLE contact_totals (
    workspace_id  UUID PRIMARY KEY,
    total         BIGINT NOT NULL,
    opted_out     BIGINT NOT NULL,
    blocked       BIGINT NOT NULL
);

-- Campaigns by when they started, for the campaigns of a period.
CREATE INDEX campaigns_workspace_started ON campaigns (workspace_id, started_at);

-- Whole seconds since the epoch: the unit every bucket is cut from.
CREATE FUNCTION herald_epoch(at TIMESTAMPTZ) RETURNS BIGINT LANGUAGE sql IMMUTABLE AS
$$ SELECT floor(extract(epoch FROM at))::bigint $$;

-- Contacts: +1 where a time appears, -1 where it goes (opt-in, deletion). Statement triggers, so
-- that an import's batch of a thousand contacts is one grouped upsert; each passes its signed
-- steps (workspace, second, outcome, +1 or -1) and its totals' changes to the two functions
-- below.
CREATE FUNCTION herald_contact_rollup(
    workspaces UUID[], seconds BIGINT[], outcomes TEXT[], deltas INT[]
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO contact_rollups AS r (workspace_id, hour, outcome, q0, q1, q2, q3)
    SELECT workspace_id, s / 3600, outcome,
           COALESCE(sum(delta) FILTER (WHERE s % 3600 / 900 = 0), 0),
           COALESCE(sum(delta) FILTER (WHERE s % 3600 / 900 = 1), 0),
           COALESCE(sum(delta) FILTER (WHERE s % 3600 / 900 = 2), 0),
           COALESCE(sum(delta) FILTER (WHERE s % 3600 / 900 = 3), 0)
    FROM unnest(workspaces, seconds, outcomes, deltas) AS step (workspace_id, s, outcome, delta)
    GROUP BY workspace_id, s / 3600, outcome
    ON CONFLICT (workspace_id, hour, outcome) DO UPDATE
    SET q0 = r.q0 + EXCLUDED.q0, q1 = r.q1 + EXCLUDED.q1,
        q2 = r.q2 + EXCLUDED.q2, q3 = r.q3 + EXCLUDED.q3
$$;

CREATE FUNCTION herald_contact_totals(
    workspaces UUID[], totals BIGINT[], opted_outs BIGINT[], blockeds BIGINT[]
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO contact_totals AS t (workspace_id, total, opted_out, blocked)
    SELECT workspace_id, sum(total), sum(opted_out), sum(blocked)
    FROM unnest(workspaces, totals, opted_outs, blockeds) AS change (workspace_id, total, opted_out, blocked)
    GROUP BY workspace_id
    ON CONFLICT (workspace_id) DO UPDATE
    SET total = t.total + EXCLUDED.total, opted_out = t.opted_out + EXCLUDED.opted_out,
        blocked = t.blocked + EXCLUDED.blocked
$$;

CREATE FUNCTION herald_contacts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM herald_contact_rollup(array_agg(workspace_id), array_agg(herald_epoch(at)),
                                  array_agg(outcome), array_agg(1))
    FROM (SELECT n.workspace_id, step.outcome, step.at
          FROM new_rows n
          CROSS JOIN LATERAL (VALUES ('created', n.created_at), ('opted_out', n.opted_out_at))
              AS step (outcome, at)
          WHERE step.at IS NOT NULL) AS steps;
    PERFORM herald_contact_totals(array_agg(workspace_id), array_agg(1::bigint),
                                  array_agg((opted_out_at IS NOT NULL)::int::bigint),
                                  array_agg(blocked::int::bigint))
    FROM new_rows;
    RETURN NULL;
END
$$;
CREATE TRIGGER contacts_rollups_insert AFTER INSERT ON contacts
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION herald_contacts_inserted();

CREATE FUNCTION herald_contacts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM herald_contact_rollup(array_agg(workspace_id), array_agg(herald_epoch(at)),
                                  array_agg('opted_out'::text), array_agg(delta))
    FROM (SELECT n.workspace_id, step.at, step.delta
          FROM new_rows n JOIN old_rows o ON o.id = n.id
          CROSS JOIN LATERAL (VALUES (o.opted_out_at, -1), (n.opted_out_at, 1)) AS step (at, delta)
          WHERE n.opted_out_at IS DISTINCT FROM o.opted_out_at AND step.at IS NOT NULL) AS steps;
    PERFORM herald_contact_totals(array_agg(n.workspace_id), array_agg(0::bigint),
                                  array_agg((n.opted_out_at IS NOT NULL)::int::bigint
                                            - (o.opted_out_at IS NOT NULL)::int::bigint),
                                  array_agg(n.blocked::int::bigint - o.blocked::int::bigint))
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.opted_out_at IS DISTINCT FROM o.opted_out_at OR n.blocked <> o.blocked;
    RETURN NULL;
END
$$;
CREATE TRIGGER contacts_rollups_update AFTER UPDATE ON contacts
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION herald_contacts_updated();

CREATE FUNCTION herald_contacts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM herald_contact_rollup(array_agg(workspace_id), array_agg(herald_epoch(at)),
                                  array_agg(outcome), array_agg(-1))
    FROM (SELECT o.workspace_id, step.outcome, step.at
          FROM old_rows o
          CROSS JOIN LATERAL (VALUES ('created', o.created_at), ('opted_out', o.opted_out_at))
              AS step (outcome, at)
          WHERE step.at IS NOT NULL) AS steps;
    PERFORM herald_contact_totals(array_agg(workspace_id), array_agg(-1::bigint),
                                  array_agg(-(opted_out_at IS NOT NULL)::int::bigint),
                                  array_agg(-blocked::int::bigint))
    FROM old_rows;
    RETURN NULL;
END
$$;
CREATE TRIGGER contacts_rollups_delete AFTER DELETE ON contacts
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION herald_contacts_deleted();

-- What exists already.
INSERT INTO message_rollups (workspace_id, hour, sender_id, direction, outcome, q0, q1, q2, q3)
SELECT workspace_id, s / 3600, sender_id, direction, outcome,
       count(*) FILTER (WHERE s % 3600 / 900 = 0), count(*) FILTER (WHERE s % 3600 / 900 = 1),
       count(*) FILTER (WHERE s % 3600 / 900 = 2), count(*) FILTER (WHERE s % 3600 / 900 = 3)
FROM (SELECT m.workspace_id, m.sender_id, m.direction, step.outcome, herald_epoch(step.at) AS s
      FROM messages m
      CROSS JOIN LATERAL (VALUES
          ('sent', CASE WHEN m.direction = 'outbound' THEN m.sent_at END),
          ('delivered', CASE WHEN m.direction = 'outbound' THEN m.delivered_at END),
          ('read', CASE WHEN m.direction = 'outbound' THEN m.read_at END),
          ('failed', CASE WHEN m.direction = 'outbound' THEN m.failed_at END),
          ('received', CASE WHEN m.direction = 'inbound'
                            THEN COALESCE(m.delivered_at, m.created_at) END)) AS step (outcome, at)
      WHERE step.at IS NOT NULL) AS steps
GROUP BY workspace_id, s / 3600, sender_id, direction, outcome;

INSERT INTO campaign_timeline (campaign_id, minute, workspace_id, sender_id, sent, delivered, read,
                               failed)
SELECT campaign_id, s / 60, workspace_id, sender_id, count(*) FILTER (WHERE outcome = 'sent'),
       count(*) FILTER (WHERE outcome = 'delivered'), count(*) FILTER (WHERE outcome = 'read'),
       count(*) FILTER (WHERE outcome = 'failed')
FROM (SELECT m.campaign_id, m.workspace_id, m.sender_id, step.outcome, herald_epoch(step.at) AS s
      FROM messages m
      CROSS JOIN LATERAL (VALUES ('sent', m.sent_at), ('delivered', m.delivered_at),
                                 ('read', m.read_at), ('failed', m.failed_at)) AS step (outcome, at)
      WHERE m.campaign_id IS NOT NULL AND step.at IS NOT NULL) AS steps
GROUP BY campaign_id, s / 60, workspace_id, sender_id;

INSERT INTO contact_rollups (workspace_id, hour, outcome, q0, q1, q2, q3)
SELECT workspace_id, s / 3600, outcome,
       count(*) FILTER (WHERE s % 3600 / 900 = 0), count(*) FILTER (WHERE s % 3600 / 900 = 1),
       count(*) FILTER (WHERE s % 3600 / 900 = 2), count(*) FILTER (WHERE s % 3600 / 900 = 3)
FROM (SELECT c.workspace_id, step.outcome, herald_epoch(step.at) AS s
      FROM contacts c
      CROSS JOIN LATERAL (VALUES ('created', c.created_at), ('opted_out', c.opted_out_at))
          AS step (outcome, at)
      WHERE step.at IS NOT NULL) AS steps
GROUP BY workspace_id, s / 3600, outcome;

INSERT INTO contact_totals (workspace_id, total, opted_out, blocked)
SELECT workspace_id, count(*), count(*) FILTER (WHERE opted_out_at IS NOT NULL),
       count(*) FILTER (WHERE blocked)
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
CREATE FUNCTION herald_message_rollup_moved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    added BIGINT[] := ARRAY[NEW.q0, NEW.q1, NEW.q2, NEW.q3];
BEGIN
    IF TG_OP = 'UPDATE' THEN
        added := ARRAY[NEW.q0 - OLD.q0, NEW.q1 - OLD.q1, NEW.q2 - OLD.q2, NEW.q3 - OLD.q3];
    END IF;
    INSERT INTO message_rollups_daily AS d (workspace_id, day, sender_id, direction, outcome, count)
    VALUES (NEW.workspace_id, NEW.hour / 24, NEW.sender_id, NEW.direction, NEW.outcome,
            added[1] + added[2] + added[3] + added[4])
    ON CONFLICT (workspace_id, day, sender_id, direction, outcome)
    DO UPDATE SET count = d.count + EXCLUDED.count;
    INSERT INTO workspace_rollups AS w (workspace_id, hour, direction, outcome, q0, q1, q2, q3)
    VALUES (NEW.workspace_id, NEW.hour, NEW.direction, NEW.outcome,
            added[1], added[2], added[3], added[4])
    ON CONFLICT (workspace_id, hour, direction, outcome)
    DO UPDATE SET q0 = w.q0 + EXCLUDED.q0, q1 = w.q1 + EXCLUDED.q1,
                  q2 = w.q2 + EXCLUDED.q2, q3 = w.q3 + EXCLUDED.q3;
    RETURN NULL;
END
$$;
CREATE TRIGGER message_rollups_inserted AFTER INSERT ON message_rollups
FOR EACH ROW EXECUTE FUNCTION herald_message_rollup_moved();
CREATE TRIGGER message_rollups_updated AFTER UPDATE ON message_rollups
FOR EACH ROW EXECUTE FUNCTION herald_message_rollup_moved();

CREATE FUNCTION herald_campaign_timeline_moved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    added BIGINT[] := ARRAY[NEW.sent, NEW.delivered, NEW.read, NEW.failed];
BEGIN
    IF TG_OP = 'UPDATE' THEN
        added := ARRAY[NEW.sent - OLD.sent, NEW.delivered - OLD.delivered, NEW.read - OLD.read,
                       NEW.failed - OLD.failed];
    END IF;
    FOR i IN 1..4 LOOP
        CONTINUE WHEN added[i] = 0;
        INSERT INTO message_rollups AS r
            (workspace_id, hour, sender_id, direction, outcome, q0, q1, q2, q3)
        VALUES (NEW.workspace_id, NEW.minute / 60, NEW.sender_id, 'outbound',
                (ARRAY['sent', 'delivered', 'read', 'failed'])[i],
                CASE WHEN NEW.minute % 60 / 15 = 0 THEN added[i] ELSE 0 END,
                CASE WHEN NEW.minute % 60 / 15 = 1 THEN added[i] ELSE 0 END,
                CASE WHEN NEW.minute % 60 / 15 = 2 THEN added[i] ELSE 0 END,
                CASE WHEN NEW.minute % 60 / 15 = 3 THEN added[i] ELSE 0 END)
        ON CONFLICT (workspace_id, hour, sender_id, direction, outcome)
        DO UPDATE SET q0 = r.q0 + EXCLUDED.q0, q1 = r.q1 + EXCLUDED.q1,
                      q2 = r.q2 + EXCLUDED.q2, q3 = r.q3 + EXCLUDED.q3;
    END LOOP;
    INSERT INTO campaign_timeline_hourly AS h (campaign_id, hour, sent, delivered, read, failed)
    VALUES (NEW.campaign_id, NEW.minute / 60, added[1], added[2], added[3], added[4])
    ON CONFLICT (campaign_id, hour)
    DO UPDATE SET sent = h.sent + EXCLUDED.sent, delivered = h.delivered + EXCLUDED.delivered,
                  read = h.read + EXCLUDED.read, failed = h.failed + EXCLUDED.failed;
    RETURN NULL;
END
$$;
CREATE TRIGGER campaign_timeline_inserted AFTER INSERT ON campaign_timeline
FOR EACH ROW EXECUTE FUNCTION herald_campaign_timeline_moved();
CREATE TRIGGER campaign_timeline_updated AFTER UPDATE ON campaign_timeline
FOR EACH ROW EXECUTE FUNCTION herald_campaign_timeline_moved();
