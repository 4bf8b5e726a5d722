//! One plan per SQLite statement, whatever values it is given.
//!
//! SQLite looks at some bound values while it plans a statement: a `LIMIT $4` whose value it
//! reads to plan the `LIMIT`, a parameter compared with a partial index's condition. It then
//! marks the statement as planned for those values, and binding any other value — which sqlx
//! does before every run — makes the next step prepare the whole statement again: its parse,
//! its plan and the triggers it fires. The lane's claim (`… LIMIT $4`) was prepared again on
//! every batch, with the message triggers compiled into it each time (~6 % of the writer
//! thread's time under the http benchmark), and so was every paged list.
//!
//! SQLite's query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`) makes a statement
//! keep the plan it was first prepared with. Herald loses nothing by it: it keeps no
//! `sqlite_stat4` samples, and its statements name a partial index's condition as a literal
//! (`status = 'pending'`), never through a parameter.

use sqlx::SqliteConnection;
use std::ffi::c_int;

/// Turns the guarantee on for `conn`.
pub(super) async fn keep_on(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    match guarantee(conn, 1).await? {
        true => Ok(()),
        false => Err(sqlx::Error::Configuration(
            "SQLite did not keep its query planner stability guarantee on".into(),
        )),
    }
}

/// Sets the guarantee of `conn` (1: on, 0: off, -1: as it is) and says whether it is on.
async fn guarantee(conn: &mut SqliteConnection, setting: c_int) -> Result<bool, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut now_on: c_int = 0;
    // SAFETY: `db` is this connection's open handle, locked for the call so that no statement
    // of its runs meanwhile. ENABLE_QPSG takes an int (the setting) and a pointer to an int
    // that receives the setting after the call, as SQLite documents for this option; both
    // outlive the call.
    let code = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            setting,
            &mut now_on as *mut c_int,
        )
    };
    if code != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Configuration(
            format!("SQLite refused its query planner stability guarantee (code {code})").into(),
        ));
    }
    Ok(now_on != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Conn;

    /// Every connection the store opens on a SQLite file keeps its plans: the writer, which
    /// claims and records sends, and the readers.
    #[tokio::test]
    async fn every_connection_keeps_its_plans() {
        let (_dir, _, db) = crate::store::tests::on_a_file().await;
        let mut tx = db.begin().await.expect("the writer");
        let Conn::Sqlite(writer) = tx.conn() else {
            unreachable!("a sqlite: URL opens SQLite")
        };
        assert!(guarantee(writer, -1).await.expect("the setting reads"));
        drop(tx);
        let mut read = db.read().await.expect("a reader");
        let Conn::Sqlite(reader) = read.conn() else {
            unreachable!("a sqlite: URL opens SQLite")
        };
        assert!(guarantee(reader, -1).await.expect("the setting reads"));
        drop(read);
        db.close().await;
    }
}
