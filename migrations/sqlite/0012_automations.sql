-- Automatic replies to inbound messages: rules, what each replied to, the workspace's opt-out
-- keyword replies, and the messages that are replies (for the hourly cap per contact).
CREATE TABLE automations (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    sender_id     BLOB REFERENCES senders (id) ON DELETE CASCADE,   -- NULL: every sender
    name          TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    enabled       INTEGER NOT NULL,
    cooldown_s    INTEGER NOT NULL,
    trigger_type  TEXT NOT NULL CHECK (trigger_type IN ('keyword', 'welcome', 'away', 'fallback')),
    trigger_spec  TEXT NOT NULL,   -- JSON, the domain's Trigger
    reply_spec    TEXT NOT NULL,   -- JSON: {content} or {template_id}
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
-- Evaluation order: highest priority first, ties oldest first.
CREATE INDEX automations_order ON automations (workspace_id, priority DESC, created_at, id);

CREATE TABLE automation_runs (
    id                  BLOB PRIMARY KEY,
    workspace_id        BLOB NOT NULL,
    automation_id       BLOB NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    inbound_message_id  BLOB NOT NULL,
    contact_id          BLOB NOT NULL,
    reply_message_id    BLOB NOT NULL,
    at                  TEXT NOT NULL
);
-- A rule's cooldown per contact, and its runs newest first.
CREATE INDEX automation_runs_cooldown ON automation_runs (automation_id, contact_id, at);
CREATE INDEX automation_runs_list ON automation_runs (automation_id, at, id);

-- One row once a workspace has set its replies; NULL in a row means "send nothing".
CREATE TABLE keyword_replies (
    workspace_id   BLOB PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    opt_out_reply  TEXT,
    opt_in_reply   TEXT,
    help_reply     TEXT,
    updated_at     TEXT NOT NULL
);

-- Changes with every change to the workspace's rules: processes cache compiled rules by it.
ALTER TABLE workspaces ADD COLUMN automations_version TEXT;

-- The inbound message an automatic reply answers.
ALTER TABLE messages ADD COLUMN reply_to BLOB;


-- A platform's id of an inbound message, once per sender: a webhook delivered again records
-- (and answers) nothing twice.
CREATE UNIQUE INDEX messages_inbound_once ON messages (sender_id, provider_message_id)
    WHERE direction = 'inbound' AND provider_message_id IS NOT NULL;
