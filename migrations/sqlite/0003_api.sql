-- What the HTTP API keeps between requests: idempotent responses and contact imports.

-- The first response to each Idempotency-Key, per API key and path, kept for 24 hours. A row
-- with no status is a request still running (until locked_until, after which its process is
-- presumed dead and the key may be used again).
CREATE TABLE idempotency_keys (
    api_key_id           BLOB NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    path                 TEXT NOT NULL,
    key                  TEXT NOT NULL,
    -- SHA-256 of method and body: the same key with another request is refused, not replayed.
    request_fingerprint  TEXT NOT NULL,
    status               INTEGER,
    body                 BLOB,
    content_type         TEXT,
    locked_until         TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    expires_at           TEXT NOT NULL,
    PRIMARY KEY (api_key_id, path, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- A CSV import of contacts, run as a job; the CSV is kept until the job has read it all.
CREATE TABLE contact_imports (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    status        TEXT NOT NULL,             -- queued, running, completed, failed
    csv           BLOB,
    total         INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL DEFAULT 0,
    updated       INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    errors        TEXT NOT NULL DEFAULT '[]',    -- JSON array of {line, message}, the first 1,000
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE INDEX contact_imports_workspace ON contact_imports (workspace_id, created_at);
