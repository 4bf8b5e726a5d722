-- The event log: whatever others react to (a message's status, an inbound message, a campaign's
-- transition, a contact's change, an import's end), appended in the same transaction as the
-- change. Readers go by position; a position is handed out by a sequence without a cache, so a
-- later insert always has a higher position, but transactions commit out of order: a reader
-- treats a gap as "not committed yet" until every transaction older than it has ended.
CREATE TABLE events (
    position      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  UUID NOT NULL,
    type          TEXT NOT NULL,           -- message.sent, campaign.completed, ... (API.md)
    subject_id    UUID NOT NULL,           -- the message, campaign, contact or import
    payload       JSONB,                   -- NULL: the subject's row tells (message.* events)
    occurred_at   TIMESTAMPTZ NOT NULL
);

-- A message's status changes are told by the database itself, in the statement that makes them:
-- the send path records 64 outcomes in one UPDATE and pays no round trip, parameter or JSON for
-- their events. Readers build the payload from the message's row (payload NULL). Only what
-- others hear of: outbound messages reaching sent, delivered, read or failed
-- (domain::event::EventType::of_message_status).
CREATE FUNCTION herald_message_status_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (workspace_id, type, subject_id, payload, occurred_at)
    VALUES (NEW.workspace_id, 'message.' || NEW.status, NEW.id, NULL, NEW.updated_at);
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_status_event AFTER UPDATE OF status ON messages
FOR EACH ROW
WHEN (NEW.status IS DISTINCT FROM OLD.status AND NEW.direction = 'outbound'
      AND NEW.status IN ('sent', 'delivered', 'read', 'failed'))
EXECUTE FUNCTION herald_message_status_event();

-- Each reader of the log and how far it has read: the log is pruned only behind all of them.
CREATE TABLE event_consumers (
    name        TEXT PRIMARY KEY,
    position    BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Schema parity (tests/schema.rs): SQLite names this index messages_campaign_status (its
-- WITHOUT ROWID index holds id implicitly); one name in both dialects.
ALTER INDEX messages_campaign_status_id RENAME TO messages_campaign_status;
