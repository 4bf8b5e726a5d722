-- Claims whose process died are found by when their lease runs out. The index was partial on
-- `status = 'sending'`, which made PostgreSQL's planner answer the recorder's guard
-- (`status = 'sending' AND id = …`) with a bitmap scan of it instead of the primary key: a
-- bitmap scan never marks the entries of older row versions dead, and every claim leaves one,
-- so recording 64 sends read every message claimed since the last vacuum (42 ms at 20,000
-- messages, growing with the campaign). Only claimed messages have a lease, so this index holds
-- the same live rows, and no statement but the requeue's names its predicate.
DROP INDEX messages_in_flight;
CREATE INDEX messages_in_flight ON messages (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
