-- Herald's schema, SQLite dialect (migrations/postgres holds the same schema for PostgreSQL).
--
-- Ids are UUIDs stored as 16-byte blobs. Times are UTC, RFC 3339 text written by Herald itself
-- (never CURRENT_TIMESTAMP), so they sort in time order. JSON columns are text.
-- Every row carries its workspace, directly or through the row that owns it.

CREATE TABLE workspaces (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    CONSTRAINT workspaces_name_unique UNIQUE (name)
);

CREATE TABLE api_keys (
    id               BLOB PRIMARY KEY,
    workspace_id     BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    -- SHA-256 of the token's secret half; the secret itself is never stored.
    secret_digest    TEXT NOT NULL,
    abilities        TEXT NOT NULL,          -- JSON array of ability names
    rate_per_minute  INTEGER,                -- NULL: the server's default
    created_at       TEXT NOT NULL,
    last_used_at     TEXT,
    revoked_at       TEXT
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE contacts (
    id             BLOB PRIMARY KEY,
    workspace_id   BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    phone          TEXT NOT NULL,            -- E.164
    name           TEXT,
    email          TEXT,
    tags           TEXT NOT NULL DEFAULT '[]',   -- JSON array, as the API shows it
    custom_fields  TEXT NOT NULL DEFAULT '{}',   -- JSON object of strings
    timezone       TEXT,
    opted_out_at   TEXT,
    blocked        INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    CONSTRAINT contacts_phone_unique UNIQUE (workspace_id, phone)
);
CREATE INDEX contacts_workspace_created ON contacts (workspace_id, created_at);

-- One row per (tag, contact): audiences by tag are index range scans, not JSON scans.
-- Written in the same transaction as contacts.tags.
CREATE TABLE contact_tags (
    workspace_id  BLOB NOT NULL,
    tag           TEXT NOT NULL,
    contact_id    BLOB NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    PRIMARY KEY (workspace_id, tag, contact_id)
) WITHOUT ROWID;
CREATE INDEX contact_tags_contact ON contact_tags (contact_id);

-- Static groups list their members; dynamic groups keep filters and resolve them at use.
CREATE TABLE contact_groups (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('static', 'dynamic')),
    filters       TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CONSTRAINT contact_groups_name_unique UNIQUE (workspace_id, name)
);

CREATE TABLE contact_group_members (
    group_id      BLOB NOT NULL REFERENCES contact_groups (id) ON DELETE CASCADE,
    contact_id    BLOB NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    workspace_id  BLOB NOT NULL,
    added_at      TEXT NOT NULL,
    PRIMARY KEY (group_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX contact_group_members_contact ON contact_group_members (contact_id);

CREATE TABLE templates (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    content       TEXT NOT NULL,
    media_url     TEXT,
    variables     TEXT NOT NULL DEFAULT '[]',   -- JSON array, in order of first use
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX templates_workspace_created ON templates (workspace_id, created_at);

-- One sending identity (one WhatsApp number) and its pacing. A NULL pacing field turns its
-- gate off.
CREATE TABLE senders (
    id                  BLOB PRIMARY KEY,
    workspace_id        BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    provider            TEXT NOT NULL,
    provider_config     TEXT NOT NULL DEFAULT '{}',
    timezone            TEXT NOT NULL DEFAULT 'UTC',
    -- Key of the HMAC over provider callbacks. The server must use it to verify, so it is kept
    -- as issued (a digest of it would verify and forge alike).
    callback_secret     TEXT NOT NULL,
    daily_limit         INTEGER,
    warmup_enabled      INTEGER NOT NULL DEFAULT 0,
    warmup_start_limit  INTEGER,
    warmup_max_limit    INTEGER,
    warmup_days         INTEGER,
    warmup_started_on   TEXT,                -- the sender's local date warmup day 1 fell on
    shift_min_ms        INTEGER,
    shift_max_ms        INTEGER,
    typing_enabled      INTEGER NOT NULL DEFAULT 0,
    typing_cps          INTEGER,
    typing_min_ms       INTEGER,
    typing_max_ms       INTEGER,
    rate_per_minute     INTEGER,
    window_days         TEXT,                -- JSON array of ISO weekdays
    window_start        TEXT,                -- HH:MM, sender's local time
    window_end          TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX senders_workspace_created ON senders (workspace_id, created_at);

CREATE TABLE campaigns (
    id               BLOB PRIMARY KEY,
    workspace_id     BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    sender_id        BLOB NOT NULL REFERENCES senders (id),
    template_id      BLOB REFERENCES templates (id) ON DELETE SET NULL,
    -- The text sent: the template's content when the campaign was written, or its own.
    content          TEXT NOT NULL,
    media_url        TEXT,
    audience         TEXT NOT NULL,          -- JSON: {"type": "all" | "group" | "tags" | "contacts", ...}
    variables        TEXT NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'canceled', 'completed')),
    scheduled_at     TEXT,
    started_at       TEXT,
    paused_at        TEXT,
    completed_at     TEXT,
    canceled_at      TEXT,
    -- Counters, changed in the same transaction as the message statuses they count.
    total_count      INTEGER NOT NULL DEFAULT 0,
    pending_count    INTEGER NOT NULL DEFAULT 0,   -- pending or in flight
    sent_count       INTEGER NOT NULL DEFAULT 0,   -- reached sent or later
    delivered_count  INTEGER NOT NULL DEFAULT 0,   -- reached delivered or read
    read_count       INTEGER NOT NULL DEFAULT 0,
    failed_count     INTEGER NOT NULL DEFAULT 0,
    skipped_count    INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX campaigns_workspace_created ON campaigns (workspace_id, created_at);
CREATE INDEX campaigns_sender_status ON campaigns (sender_id, status);
CREATE INDEX campaigns_due ON campaigns (scheduled_at) WHERE status = 'scheduled';

-- One row per recipient and send. Clustered by id: ids are time-ordered, so a launch appends.
CREATE TABLE messages (
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
                         CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'read', 'failed', 'skipped')),
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
-- The lane's claim: the next pending messages of one sender, one campaign (or none) at a time.
CREATE INDEX messages_claim ON messages (sender_id, campaign_id, status, not_before);
-- A campaign's messages by status, for lists and for skipping on cancel.
CREATE INDEX messages_campaign_status ON messages (campaign_id, status);
-- Claims whose process died: found by when their lease runs out.
CREATE INDEX messages_in_flight ON messages (lease_expires_at) WHERE status = 'sending';
-- Provider callbacks name messages by the provider's id.
CREATE INDEX messages_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- Sends per sender per local day: the daily cap survives restarts and holds across processes.
CREATE TABLE sender_daily_usage (
    sender_id     BLOB NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    day           TEXT NOT NULL,             -- the sender's local date, YYYY-MM-DD
    workspace_id  BLOB NOT NULL,
    sent          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sender_id, day)
) WITHOUT ROWID;
