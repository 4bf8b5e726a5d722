-- WhatsApp shows "typing…" only in answer to a message the person sent: the platform's id of
-- each phone's last message to each sender is kept with its customer-service window.
ALTER TABLE conversations ADD COLUMN last_inbound_id TEXT;
