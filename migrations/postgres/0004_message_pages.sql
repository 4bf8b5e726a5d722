-- A campaign's messages by status come out in id order straight from the index (the first page
-- of a million reads fifty entries, not a million to sort).
CREATE INDEX messages_campaign_status_id ON messages (campaign_id, status, id);
DROP INDEX messages_campaign_status;
