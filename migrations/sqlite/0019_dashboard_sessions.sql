-- Dashboard sessions: a person signs in with an API token and the browser then holds a random
-- session secret in an HttpOnly cookie. Only the secret's digest is stored. A session acts with
-- its key's workspace and abilities, and ends at its own expiry, at sign-out, or as soon as its
-- key is revoked or expires (checked on every page).
CREATE TABLE dashboard_sessions (
    secret_digest  TEXT PRIMARY KEY,
    api_key_id     BLOB NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_token     TEXT NOT NULL,        -- every form of the session carries it
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
