-- Outbound webhooks: endpoints, one delivery per (endpoint, event) with its attempts, and a
-- lease on event-log consumers so that one process at a time fans the log out.
CREATE TABLE webhooks (
    id               UUID PRIMARY KEY,
    workspace_id     UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    url              TEXT NOT NULL,
    description      TEXT,
    events           JSONB NOT NULL,     -- JSON array of patterns: names, 'prefix.*', '*'
    secret           TEXT NOT NULL,      -- whsec_…: read back to sign, never shown again
    enabled          BOOLEAN NOT NULL,
    disabled_reason  TEXT,               -- why Herald turned it off (a 410)
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id, created_at, id);

CREATE TABLE webhook_deliveries (
    id               UUID PRIMARY KEY,
    workspace_id     UUID NOT NULL,
    webhook_id       UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         BIGINT NOT NULL,    -- the event's position in the log: webhook-id
    type             TEXT NOT NULL,
    subject_id       UUID NOT NULL,      -- the message, campaign, contact…: ordered per subject
    body             TEXT NOT NULL,      -- {"type","timestamp","data"}, kept after the log is pruned
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         BIGINT  NOT NULL,
    failures         BIGINT  NOT NULL,   -- failed attempts since the delivery (re)started
    response_status  BIGINT ,
    error            TEXT,
    duration_ms      BIGINT ,
    next_attempt_at  TIMESTAMPTZ,
    lease_owner      TEXT,
    lease_until      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
-- An event fanned out again after a crash adds nothing; an endpoint's log, newest first.
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (webhook_id, event_id);
-- What is due, and the earlier deliveries of a subject that a later one waits behind.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_chain ON webhook_deliveries (webhook_id, subject_id, event_id)
    WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    delivery_id      UUID NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt          BIGINT  NOT NULL,   -- 1 for the first, counting on through replays
    at               TIMESTAMPTZ NOT NULL,
    response_status  BIGINT ,
    error            TEXT,
    duration_ms      BIGINT  NOT NULL,
    response_excerpt TEXT,              -- the first bytes of the answer, never more
    PRIMARY KEY (delivery_id, attempt)
);

ALTER TABLE event_consumers ADD COLUMN lease_owner TEXT;
ALTER TABLE event_consumers ADD COLUMN lease_until TIMESTAMPTZ;

-- A message can reach delivered or read without a recorded stop at sent (a platform's report
-- that overtakes the send's own record) or reach read without delivered (WhatsApp skips it at
-- times). Whoever follows a message hears every step, in order: the ones it skipped are told
-- before the one it reached. A BEFORE trigger of its own, so that they come first and the
-- common move (to sent) runs nothing more than its WHEN.
CREATE FUNCTION herald_message_skipped_status_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'sent' THEN
        INSERT INTO events (workspace_id, type, subject_id, payload, occurred_at)
        VALUES (NEW.workspace_id, 'message.sent', NEW.id, NULL, NEW.updated_at);
    END IF;
    IF NEW.status = 'read' THEN
        INSERT INTO events (workspace_id, type, subject_id, payload, occurred_at)
        VALUES (NEW.workspace_id, 'message.delivered', NEW.id, NULL, NEW.updated_at);
    END IF;
    RETURN NEW;   -- a BEFORE trigger that returned NULL would cancel the update
END
$$;
CREATE TRIGGER messages_skipped_status_events BEFORE UPDATE OF status ON messages
FOR EACH ROW
WHEN (NEW.direction = 'outbound' AND OLD.status IN ('pending', 'sending', 'sent')
      AND NEW.status IN ('delivered', 'read'))
EXECUTE FUNCTION herald_message_skipped_status_events();
