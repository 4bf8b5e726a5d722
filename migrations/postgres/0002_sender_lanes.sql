-- Which process's lane owns each sender, until when, and when it last sent. The lease makes one
-- lane per sender across processes; last_send_at keeps rate and shift gaps across restarts.
CREATE TABLE sender_lanes (
    sender_id         UUID PRIMARY KEY REFERENCES senders (id) ON DELETE CASCADE,
    owner             TEXT NOT NULL,
    lease_expires_at  TIMESTAMPTZ NOT NULL,
    last_send_at      TIMESTAMPTZ
);

-- Senders with single messages due: found without scanning campaign messages.
CREATE INDEX messages_single_due ON messages (not_before) WHERE campaign_id IS NULL AND status = 'pending';
