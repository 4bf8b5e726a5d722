-- A single message made from a template with a WhatsApp part carries that part, rendered for
-- its recipient when it was queued: it goes out as Meta's template, outside the 24-hour window
-- too. A campaign's messages keep theirs on the campaign.
ALTER TABLE messages ADD COLUMN whatsapp TEXT;   -- JSON: {name, language, body_params, header}
