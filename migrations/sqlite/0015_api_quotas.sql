-- Per-key request quotas, counted in the database so that every process shares them.
ALTER TABLE api_keys ADD COLUMN daily_quota INTEGER;     -- NULL: no daily quota
ALTER TABLE api_keys ADD COLUMN monthly_quota INTEGER;   -- NULL: no monthly quota

-- Requests per key and period: `d:YYYY-MM-DD` and `m:YYYY-MM` (UTC) for the quotas and
-- `/v1/me`, and on PostgreSQL `min:YYYY-MM-DDTHH:MM`, the per-minute limit's window across
-- processes (pruned after an hour).
CREATE TABLE api_key_usage (
    api_key_id  BLOB NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    period      TEXT NOT NULL,
    requests    INTEGER NOT NULL,
    PRIMARY KEY (api_key_id, period)
) WITHOUT ROWID;
