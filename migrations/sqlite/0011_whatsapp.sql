-- WhatsApp: a template's part approved at Meta (copied into each campaign made from it), each
-- contact's conversation (both directions) by time, and the customer-service window: when each
-- phone last wrote to each sender.
ALTER TABLE templates ADD COLUMN whatsapp TEXT;   -- JSON: {name, language, body_params, header}
ALTER TABLE campaigns ADD COLUMN whatsapp TEXT;   -- the template's, as it was at creation

CREATE INDEX messages_contact ON messages (contact_id, created_at) WHERE contact_id IS NOT NULL;

CREATE TABLE conversations (
    sender_id        BLOB NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    phone            TEXT NOT NULL,            -- E.164
    last_inbound_at  TEXT NOT NULL,
    PRIMARY KEY (sender_id, phone)
);
