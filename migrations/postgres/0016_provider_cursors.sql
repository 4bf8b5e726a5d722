-- Where a provider that is polled for its inbound messages (MazBot, which pushes nothing) left
-- off, per sender: written in the transaction that stores what the poll brought, so that a
-- restart neither loses a message nor ingests one twice.
CREATE TABLE provider_cursors (
    sender_id   UUID NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sender_id, name)
);
