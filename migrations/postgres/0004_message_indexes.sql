-- Only pending messages are ever claimed. An index of them alone shrinks as a campaign goes
-- out, and a message's later changes (sending, sent, delivered, read) never touch it.
DROP INDEX messages_claim;
CREATE INDEX messages_claim ON messages (sender_id, campaign_id, not_before, id) WHERE status = 'pending';

-- A campaign's messages by status come out in id order straight from the index (the first page
-- of a million reads fifty entries, not a million to sort).
CREATE INDEX messages_campaign_status_id ON messages (campaign_id, status, id);
DROP INDEX messages_campaign_status;
