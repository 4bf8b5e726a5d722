-- Each key's per-minute limit as a cell rate: the theoretical arrival time of its next request,
-- in microseconds since the epoch (domain::quota::MinuteRate). In the database, so that every
-- process sharing it shares the limit; it replaces the per-minute windows of api_key_usage.
CREATE TABLE api_key_pace (
    api_key_id  UUID NOT NULL PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    arrival_us  BIGINT NOT NULL
);

DELETE FROM api_key_usage WHERE period LIKE 'min:%';
