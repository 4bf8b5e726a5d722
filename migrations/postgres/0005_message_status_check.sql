-- SQLite's 0005 rebuilds messages to turn its status CHECK from an IN list into a chain of `=`
-- (an IN list inside a CHECK costs SQLite a temporary index per row written). PostgreSQL
-- evaluates `status IN (…)` as a cheap array test, so its constraint stays as 0001 wrote it.
-- The version is kept so that both dialects number their migrations alike.
SELECT 1;
