-- The event log: whatever others react to (a message's status, an inbound message, a campaign's
-- transition, a contact's change, an import's end), appended in the same transaction as the
-- change. AUTOINCREMENT, so that a position is never handed out twice even after the log has
-- been pruned empty; SQLite's single writer commits them in order.
CREATE TABLE events (
    position      INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id  BLOB NOT NULL,
    type          TEXT NOT NULL,           -- message.sent, campaign.completed, ... (API.md)
    subject_id    BLOB NOT NULL,           -- the message, campaign, contact or import
    payload       TEXT,                    -- JSON; NULL: the subject's row tells
    occurred_at   TEXT NOT NULL
);

-- Each reader of the log and how far it has read: the log is pruned only behind all of them.
CREATE TABLE event_consumers (
    name        TEXT PRIMARY KEY,
    position    INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);

-- A message's status changes are told by the database itself, in the statement that makes them:
-- the send path records 64 outcomes in one UPDATE and pays no round trip, parameter or JSON for
-- their events. Readers build the payload from the message's row (payload NULL). Only what
-- others hear of: outbound messages reaching sent, delivered, read or failed
-- (domain::event::EventType::of_message_status).
CREATE TRIGGER messages_status_event AFTER UPDATE OF status ON messages
WHEN NEW.status IS NOT OLD.status AND NEW.direction = 'outbound'
     AND (NEW.status = 'sent' OR NEW.status = 'delivered' OR NEW.status = 'read'
          OR NEW.status = 'failed')
BEGIN
    INSERT INTO events (workspace_id, type, subject_id, payload, occurred_at)
    VALUES (NEW.workspace_id, 'message.' || NEW.status, NEW.id, NULL, NEW.updated_at);
END;
