-- Only pending messages are ever claimed. An index of them alone shrinks as a campaign goes
-- out, and a message's later changes (sending, sent, delivered, read) never touch it: a send
-- moves one index entry instead of four.
DROP INDEX messages_claim;
CREATE INDEX messages_claim ON messages (sender_id, campaign_id, not_before) WHERE status = 'pending';

-- messages is a WITHOUT ROWID table, so messages_campaign_status already holds the primary key
-- (id) after (campaign_id, status): a campaign's messages by status come out in id order
-- straight from the index (PostgreSQL's needs id added).
