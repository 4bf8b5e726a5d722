-- Claims whose process died are found by when their lease runs out. The index was partial on
-- `status = 'sending'`, which made PostgreSQL's planner answer the recorder's guard
-- (`status = 'sending' AND id = …`) with a bitmap scan of it instead of the primary key: a
-- bitmap scan never marks the entries of older row versions dead, and every claim leaves one,
-- so recording 64 sends read every message claimed since the last vacuum (42 ms at 20,000
-- messages, growing with the campaign). Only claimed messages have a lease, so this index holds
-- the same live rows, and no statement but the requeue's names its predicate.
DROP INDEX messages_in_flight;
CREATE INDEX messages_in_flight ON messages (lease_expires_at) WHERE lease_expires_at IS NOT NULL;

-- A message's status event is appended by one INSERT per statement, from the statement's
-- transition tables, where a row trigger ran a function and an INSERT for each message (27 µs
-- a message, a third of the database's time on the send path). It fires on every UPDATE of
-- messages (transition tables cannot go with a column list); a statement that changes no
-- status (a claim's renewal) inserts nothing. The skipped steps' BEFORE row trigger
-- (0013) still runs first, so a message's events keep their order.
DROP TRIGGER messages_status_event ON messages;
DROP FUNCTION herald_message_status_event();
CREATE FUNCTION herald_message_status_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (workspace_id, type, subject_id, payload, occurred_at)
    SELECT n.workspace_id, 'message.' || n.status, n.id, NULL, n.updated_at
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status AND n.direction = 'outbound'
      AND n.status IN ('sent', 'delivered', 'read', 'failed');
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_status_event AFTER UPDATE ON messages
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION herald_message_status_events();
