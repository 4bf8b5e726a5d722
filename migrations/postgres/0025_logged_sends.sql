-- Sends that happened, logged as they complete and applied to `messages` in bulk. A lane's
-- sends must be durable within a few milliseconds of their answer (a `kill -9` repeats at most
-- the sends in flight), but rewriting 64 messages a commit — each row, its index entries, its
-- event, the campaign's counters and the rollups — costs about what 1,024 did, sixteen times
-- over. So a commit of completed sends appends one narrow row each here; the lane applies them
-- to `messages` every 1,024 sends or 250 ms, deleting them in the same transaction. A message
-- still `sending` whose claim runs out is recorded from its row here instead of being sent
-- again; a row whose message is no longer `sending` has been applied (or the message moved on)
-- and is swept. No foreign key: a check per logged send would cost what the log saves, and the
-- sweep drops the rows of deleted messages.
CREATE TABLE logged_sends (
    message_id           UUID PRIMARY KEY,
    provider_message_id  TEXT,
    sent_at              TIMESTAMPTZ NOT NULL
);
