-- Nothing to change: messages is a WITHOUT ROWID table, so messages_campaign_status already
-- holds the primary key (id) after (campaign_id, status), and a campaign's messages by status
-- come out in id order straight from the index. PostgreSQL's index needs id added (its 0004).
SELECT 1;
