-- The log of sends moves to a database file of its own, `<database>-sends` (attached as
-- `sends`, see `store::Db::connect`): SQLite has one writer per file, and a lane's group commit
-- to the log waited behind the claims and applies that hold the main file's writer for
-- milliseconds, and held the lane's sends with it. `Db::migrate` copies the rows a process left
-- here into the new file before this runs: their sends are recorded when their claims run out.
DROP TABLE main.logged_sends;
