-- Herald's schema, PostgreSQL dialect (migrations/sqlite holds the same schema for SQLite).
--
-- Ids are UUIDs. Times are timestamptz written by Herald itself (never now()), so that an
-- injected clock governs them. JSON columns are jsonb.
-- Every row carries its workspace, directly or through the row that owns it.

CREATE TABLE workspaces (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT workspaces_name_unique UNIQUE (name)
);

CREATE TABLE api_keys (
    id               UUID PRIMARY KEY,
    workspace_id     UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    -- SHA-256 of the token's secret half; the secret itself is never stored.
    secret_digest    TEXT NOT NULL,
    abilities        JSONB NOT NULL,          -- array of ability names
    rate_per_minute  BIGINT,                -- NULL: the server's default
    created_at       TIMESTAMPTZ NOT NULL,
    last_used_at     TIMESTAMPTZ,
    revoked_at       TIMESTAMPTZ
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE contacts (
    id             UUID PRIMARY KEY,
    workspace_id   UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    phone          TEXT NOT NULL,            -- E.164
    name           TEXT,
    email          TEXT,
    tags           JSONB NOT NULL DEFAULT '[]',   -- JSON array, as the API shows it
    custom_fields  JSONB NOT NULL DEFAULT '{}',   -- JSON object of strings
    timezone       TEXT,
    opted_out_at   TIMESTAMPTZ,
    blocked        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT contacts_phone_unique UNIQUE (workspace_id, phone)
);
CREATE INDEX contacts_workspace_created ON contacts (workspace_id, created_at);

-- One row per (tag, contact): audiences by tag are index range scans, not JSON scans.
-- Written in the same transaction as contacts.tags.
CREATE TABLE contact_tags (
    workspace_id  UUID NOT NULL,
    tag           TEXT NOT NULL,
    contact_id    UUID NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    PRIMARY KEY (workspace_id, tag, contact_id)
);
CREATE INDEX contact_tags_contact ON contact_tags (contact_id);

-- Static groups list their members; dynamic groups keep filters and resolve them at use.
CREATE TABLE contact_groups (
    id            UUID PRIMARY KEY,
    workspace_id  UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('static', 'dynamic')),
    filters       JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT contact_groups_name_unique UNIQUE (workspace_id, name)
);

CREATE TABLE contact_group_members (
    group_id      UUID NOT NULL REFERENCES contact_groups (id) ON DELETE CASCADE,
    contact_id    UUID NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    workspace_id  UUID NOT NULL,
    added_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (group_id, contact_id)
);
CREATE INDEX contact_group_members_contact ON contact_group_members (contact_id);

CREATE TABLE templates (
    id            UUID PRIMARY KEY,
    workspace_id  UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    content       TEXT NOT NULL,
    media_url     TEXT,
    variables     JSONB NOT NULL DEFAULT '[]',   -- JSON array, in order of first use
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX templates_workspace_created ON templates (workspace_id, created_at);

-- One sending identity (one WhatsApp number) and its pacing. A NULL pacing field turns its
-- gate off.
CREATE TABLE senders (
    id                  UUID PRIMARY KEY,
    workspace_id        UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    provider            TEXT NOT NULL,
    provider_config     JSONB NOT NULL DEFAULT '{}',
    timezone            TEXT NOT NULL DEFAULT 'UTC',
    -- Key of the HMAC over provider callbacks. The server must use it to verify, so it is kept
    -- as issued (a digest of it would verify and forge alike).
    callback_secret     TEXT NOT NULL,
    daily_limit         BIGINT,
    warmup_enabled      BOOLEAN NOT NULL DEFAULT FALSE,
    warmup_start_limit  BIGINT,
    warmup_max_limit    BIGINT,
    warmup_days         BIGINT,
    warmup_started_on   DATE,                -- the sender's local date warmup day 1 fell on
    shift_min_ms        BIGINT,
    shift_max_ms        BIGINT,
    typing_enabled      BOOLEAN NOT NULL DEFAULT FALSE,
    typing_cps          BIGINT,
    typing_min_ms       BIGINT,
    typing_max_ms       BIGINT,
    rate_per_minute     BIGINT,
    window_days         JSONB,                -- JSON array of ISO weekdays
    window_start        TEXT,                -- HH:MM, sender's local time
    window_end          TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX senders_workspace_created ON senders (workspace_id, created_at);

CREATE TABLE campaigns (
    id               UUID PRIMARY KEY,
    workspace_id     UUID NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    sender_id        UUID NOT NULL REFERENCES senders (id),
    template_id      UUID REFERENCES templates (id) ON DELETE SET NULL,
    -- The text sent: the template's content when the campaign was written, or its own.
    content          TEXT NOT NULL,
    media_url        TEXT,
    audience         JSONB NOT NULL,          -- JSON: {"type": "all" | "group" | "tags" | "contacts", ...}
    variables        JSONB NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL DEFAULT 'draft'
                     CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'canceled', 'completed')),
    scheduled_at     TIMESTAMPTZ,
    started_at       TIMESTAMPTZ,
    paused_at        TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    canceled_at      TIMESTAMPTZ,
    -- Counters, changed in the same transaction as the message statuses they count.
    total_count      BIGINT NOT NULL DEFAULT 0,
    pending_count    BIGINT NOT NULL DEFAULT 0,   -- pending or in flight
    sent_count       BIGINT NOT NULL DEFAULT 0,   -- reached sent or later
    delivered_count  BIGINT NOT NULL DEFAULT 0,   -- reached delivered or read
    read_count       BIGINT NOT NULL DEFAULT 0,
    failed_count     BIGINT NOT NULL DEFAULT 0,
    skipped_count    BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX campaigns_workspace_created ON campaigns (workspace_id, created_at);
CREATE INDEX campaigns_sender_status ON campaigns (sender_id, status);
CREATE INDEX campaigns_due ON campaigns (scheduled_at) WHERE status = 'scheduled';

-- One row per recipient and send. Ids are time-ordered, so a launch appends to the index.
CREATE TABLE messages (
    id                   UUID PRIMARY KEY,
    workspace_id         UUID NOT NULL,
    campaign_id          UUID REFERENCES campaigns (id) ON DELETE CASCADE,   -- NULL: a single message
    sender_id            UUID NOT NULL REFERENCES senders (id),
    -- No foreign key: a message's record outlives the contact it went to.
    contact_id           UUID,
    direction            TEXT NOT NULL DEFAULT 'outbound' CHECK (direction IN ('outbound', 'inbound')),
    phone                TEXT NOT NULL,
    body                 TEXT,               -- single messages; campaign messages render at send time
    media_url            TEXT,
    status               TEXT NOT NULL
                         CHECK (status IN ('pending', 'sending', 'sent', 'delivered', 'read', 'failed', 'skipped')),
    attempts             BIGINT NOT NULL DEFAULT 0,
    not_before           TIMESTAMPTZ NOT NULL,      -- not sent before this time (schedule, retry back-off)
    lease_expires_at     TIMESTAMPTZ,               -- while sending: when another lane may take it over
    provider_message_id  TEXT,
    error                TEXT,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    sent_at              TIMESTAMPTZ,
    delivered_at         TIMESTAMPTZ,
    read_at              TIMESTAMPTZ,
    failed_at            TIMESTAMPTZ
);
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
    sender_id     UUID NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    day           DATE NOT NULL,             -- the sender's local date, YYYY-MM-DD
    workspace_id  UUID NOT NULL,
    sent          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (sender_id, day)
);
