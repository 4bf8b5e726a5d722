//! One schema, two dialects: a freshly migrated SQLite database and a freshly migrated
//! PostgreSQL one must have the same tables, columns (with nullability and a type of the same
//! kind), indexes, unique constraints, foreign keys and triggers, and the same migration versions.

mod common;

use std::collections::BTreeMap;

use sqlx::{Connection, Row};

/// A table's shape, in terms both dialects share.
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// Column name → (kind, not null).
    columns: BTreeMap<String, (&'static str, bool)>,
    /// Index name → (columns in order, unique), for indexes a migration created by name.
    indexes: BTreeMap<String, (Vec<String>, bool)>,
    /// Column lists that the primary key or a UNIQUE constraint keeps unique.
    unique: Vec<Vec<String>>,
    primary_key: Vec<String>,
    /// Names of the triggers on the table (the event log's message events).
    triggers: Vec<String>,
    /// (columns, referenced table, action on delete) of each foreign key.
    foreign_keys: Vec<(String, String, String)>,
}

type Schema = BTreeMap<String, Table>;

/// Tables that are not Herald's schema: the migrations' own bookkeeping.
const IGNORED: [&str; 2] = ["herald_migrations", "sqlite_sequence"];

/// Foreign keys that PostgreSQL keeps with triggers instead, once per statement rather than once
/// per row (migration 0024: the per-row checks were half of a million-recipient launch):
/// (table, (columns, referenced table, action on delete)).
const POSTGRES_KEYS_KEPT_BY_TRIGGERS: [(&str, (&str, &str, &str)); 2] = [
    ("messages", ("campaign_id", "campaigns", "CASCADE")),
    ("messages", ("sender_id", "senders", "NO ACTION")),
];

/// The triggers that keep them, by table.
const POSTGRES_KEY_TRIGGERS: [(&str, &str); 4] = [
    ("messages", "messages_inserted_keys"),
    ("messages", "messages_moved_keys"),
    ("campaigns", "campaigns_delete_messages"),
    ("senders", "senders_keep_messages"),
];

/// What a column's type holds, whatever each dialect calls it: times are TEXT in SQLite and
/// timestamptz in PostgreSQL, JSON is TEXT and jsonb, booleans are INTEGER and boolean.
fn sqlite_kind(declared: &str) -> &'static str {
    match declared.to_ascii_uppercase().as_str() {
        // Ids are UUIDs in PostgreSQL and 16-byte blobs in SQLite.
        "BLOB" => "bytes",
        "INTEGER" => "integer",
        "REAL" => "real",
        _ => "text",
    }
}

fn postgres_kind(declared: &str) -> &'static str {
    match declared {
        "uuid" | "bytea" => "bytes",
        "bigint" | "integer" | "smallint" | "boolean" => "integer",
        "double precision" | "real" | "numeric" => "real",
        _ => "text",
    }
}

async fn sqlite_schema(url: &str) -> (Schema, Vec<i64>) {
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .expect("open sqlite");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list tables");
    let mut schema = Schema::new();
    for name in tables
        .into_iter()
        .filter(|t| !IGNORED.contains(&t.as_str()))
    {
        let mut table = Table::default();
        let columns = sqlx::query("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)")
            .bind(&name)
            .fetch_all(&mut conn)
            .await
            .expect("columns");
        let mut primary_key: Vec<(i64, String)> = Vec::new();
        for column in columns {
            let column_name: String = column.get("name");
            let pk: i64 = column.get("pk");
            // A primary key column is never NULL in PostgreSQL; SQLite lets a rowid table's
            // non-integer key be NULL unless it says NOT NULL, but Herald never writes one.
            let not_null = column.get::<i64, _>("notnull") == 1 || pk > 0;
            table.columns.insert(
                column_name.clone(),
                (sqlite_kind(column.get("type")), not_null),
            );
            if pk > 0 {
                primary_key.push((pk, column_name));
            }
        }
        primary_key.sort();
        table.primary_key = primary_key.into_iter().map(|(_, c)| c).collect();
        if !table.primary_key.is_empty() {
            table.unique.push(table.primary_key.clone());
        }
        let indexes = sqlx::query("SELECT name, \"unique\", origin FROM pragma_index_list(?)")
            .bind(&name)
            .fetch_all(&mut conn)
            .await
            .expect("indexes");
        for index in indexes {
            let index_name: String = index.get("name");
            let origin: String = index.get("origin");
            // xinfo, not info: in a WITHOUT ROWID table every index also holds the primary key
            // after its own columns, and that is part of what the index can order by.
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM pragma_index_xinfo(?) WHERE cid >= 0 ORDER BY seqno",
            )
            .bind(&index_name)
            .fetch_all(&mut conn)
            .await
            .expect("index columns");
            match origin.as_str() {
                "c" => {
                    table
                        .indexes
                        .insert(index_name, (columns, index.get::<i64, _>("unique") == 1));
                }
                "u" => table.unique.push(columns),
                // "pk": the primary key, read from the columns above.
                _ => {}
            }
        }
        table.unique.sort();
        table.unique.dedup();
        table.triggers = sqlx::query_scalar(
            "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? ORDER BY name",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("triggers");
        table.foreign_keys = sqlx::query_as(
            "SELECT group_concat(\"from\", ',') AS columns, \"table\", on_delete
             FROM (SELECT * FROM pragma_foreign_key_list(?) ORDER BY id, seq)
             GROUP BY id ORDER BY 1, 2",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("foreign keys");
        schema.insert(name, table);
    }
    let versions = sqlx::query_scalar("SELECT version FROM herald_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .expect("versions");
    (schema, versions)
}

async fn postgres_schema(url: &str) -> (Schema, Vec<i64>) {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("open postgres");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list tables");
    let mut schema = Schema::new();
    for name in tables
        .into_iter()
        .filter(|t| !IGNORED.contains(&t.as_str()))
    {
        let mut table = Table::default();
        let columns = sqlx::query(
            "SELECT column_name::text AS name, data_type::text AS type, is_nullable::text AS nullable
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("columns");
        for column in columns {
            let nullable: String = column.get("nullable");
            table.columns.insert(
                column.get("name"),
                (postgres_kind(column.get("type")), nullable == "NO"),
            );
        }
        // Every index of the table, with whether a constraint (primary key, UNIQUE) owns it.
        let indexes = sqlx::query(
            "SELECT i.relname::text AS name, x.indisunique AS is_unique, x.indisprimary AS is_primary,
                    EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) AS owned,
                    ARRAY(SELECT a.attname::text
                          FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
                          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                          ORDER BY k.n) AS columns
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("indexes");
        for index in indexes {
            let columns: Vec<String> = index.get("columns");
            if index.get::<bool, _>("is_primary") {
                table.primary_key = columns.clone();
            }
            if index.get::<bool, _>("owned") {
                table.unique.push(columns);
            } else {
                table
                    .indexes
                    .insert(index.get("name"), (columns, index.get("is_unique")));
            }
        }
        table.unique.sort();
        table.unique.dedup();
        table.triggers = sqlx::query_scalar(
            "SELECT g.tgname::text FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid
             WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace
               AND NOT g.tgisinternal
             ORDER BY 1",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("triggers");
        table.foreign_keys = sqlx::query_as(
            "SELECT array_to_string(ARRAY(SELECT a.attname::text
                                          FROM unnest(k.conkey) WITH ORDINALITY AS c(attnum, n)
                                          JOIN pg_attribute a
                                            ON a.attrelid = k.conrelid AND a.attnum = c.attnum
                                          ORDER BY c.n), ',') AS columns,
                    r.relname::text AS referenced,
                    CASE k.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT'
                                       WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
                                       ELSE 'SET DEFAULT' END AS on_delete
             FROM pg_constraint k
             JOIN pg_class t ON t.oid = k.conrelid
             JOIN pg_class r ON r.oid = k.confrelid
             WHERE k.contype = 'f' AND t.relname = $1
               AND t.relnamespace = current_schema()::regnamespace
             ORDER BY 1, 2",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("foreign keys");
        schema.insert(name, table);
    }
    let versions = sqlx::query_scalar("SELECT version FROM herald_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .expect("versions");
    (schema, versions)
}

#[tokio::test]
async fn both_dialects_migrate_to_the_same_schema() {
    let sqlite = common::sqlite().await;
    let Some(postgres) = common::postgres().await else {
        eprintln!(
            "{} is not set: the schema parity test needs both dialects",
            common::POSTGRES_URL_VAR
        );
        return;
    };
    let (sqlite_tables, sqlite_versions) = sqlite_schema(&sqlite.url).await;
    let (postgres_tables, postgres_versions) = postgres_schema(&postgres.url).await;
    assert_eq!(
        sqlite_versions, postgres_versions,
        "both dialects number their migrations alike"
    );
    assert!(sqlite_tables.contains_key("messages") && sqlite_tables.contains_key("events"));
    assert_eq!(
        sqlite_tables["messages"].triggers,
        ["messages_skipped_status_events", "messages_status_event"]
    );
    assert_eq!(
        sqlite_tables["message_rollups"].triggers,
        ["message_rollups_inserted", "message_rollups_updated"]
    );
    assert_eq!(
        sqlite_tables["contacts"].triggers,
        [
            "contacts_rollups_delete",
            "contacts_rollups_insert",
            "contacts_rollups_update"
        ]
    );
    assert_eq!(
        sqlite_tables.keys().collect::<Vec<_>>(),
        postgres_tables.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (name, sqlite_table) in &sqlite_tables {
        let postgres_table = &postgres_tables[name];
        let postgres_indexes = if without_rowid(&sqlite.url, name).await {
            // The same index as SQLite's, once PostgreSQL's ends with the primary key too.
            let key = &postgres_table.primary_key;
            postgres_table
                .indexes
                .iter()
                .map(|(index, (columns, unique))| {
                    let mut columns = columns.clone();
                    for column in key {
                        if !columns.contains(column) {
                            columns.push(column.clone());
                        }
                    }
                    (index.clone(), (columns, *unique))
                })
                .collect()
        } else {
            postgres_table.indexes.clone()
        };
        assert_eq!(
            sqlite_table.columns, postgres_table.columns,
            "columns of {name}: (kind, not null)"
        );
        assert_eq!(sqlite_table.indexes, postgres_indexes, "indexes of {name}");
        assert_eq!(
            sqlite_table.unique, postgres_table.unique,
            "unique column sets of {name}"
        );
        let postgres_triggers: Vec<&String> = postgres_table
            .triggers
            .iter()
            .filter(|trigger| !POSTGRES_KEY_TRIGGERS.contains(&(name.as_str(), trigger.as_str())))
            .collect();
        assert_eq!(
            sqlite_table.triggers.iter().collect::<Vec<_>>(),
            postgres_triggers,
            "triggers of {name}, besides PostgreSQL's that keep foreign keys"
        );
        let mut postgres_keys = postgres_table.foreign_keys.clone();
        for (table, (columns, referenced, on_delete)) in POSTGRES_KEYS_KEPT_BY_TRIGGERS {
            if table == name {
                postgres_keys.push((columns.into(), referenced.into(), on_delete.into()));
            }
        }
        postgres_keys.sort();
        assert_eq!(
            sqlite_table.foreign_keys, postgres_keys,
            "foreign keys of {name} (PostgreSQL's kept by triggers included)"
        );
    }
    for (table, trigger) in POSTGRES_KEY_TRIGGERS {
        assert!(
            postgres_tables[table].triggers.iter().any(|t| t == trigger),
            "PostgreSQL keeps {table}'s side of a foreign key with {trigger}"
        );
    }
}

async fn without_rowid(url: &str, table: &str) -> bool {
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .expect("open sqlite");
    let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = ?")
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .expect("table definition");
    sql.to_ascii_uppercase().contains("WITHOUT ROWID")
}
