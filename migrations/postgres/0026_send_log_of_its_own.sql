-- PostgreSQL commits concurrently, so its lanes record each group of sends in full and never
-- log them (`store::Db::logs_sends`); SQLite's log of sends has a database file of its own now.
DROP TABLE logged_sends;
