-- PostgreSQL's 0024 replaces messages' two foreign keys with triggers that check a statement's
-- keys once, instead of once per row (half of a million-recipient launch there). SQLite checks
-- a key per row with an index look-up inside the insert itself, 0.25 s of a 3.5 s launch at 1M,
-- so its keys stay as they are. The version is kept so that both dialects number their
-- migrations alike.
SELECT 1;
