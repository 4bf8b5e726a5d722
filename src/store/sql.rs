//! Building statements whose shape depends on input (filters, audiences) without string-pasting
//! any value: every value becomes a numbered `$n` parameter, valid in both dialects.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A builder's statement text, as `conn`'s dialect runs it best (see [`Placeholders`]).
pub(crate) fn built<C: Placeholders + ?Sized>(
    builder: &SqlBuilder,
    _conn: &C,
) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(C::placeholders(&builder.sql))
}

/// How a connection wants a builder's `$n` placeholders.
pub(crate) trait Placeholders {
    fn placeholders(sql: &str) -> String;
}

/// SQLite gets anonymous `?`s. For a named parameter sqlx asks SQLite for its name, which SQLite
/// finds by walking the statement's list of names, so named placeholders cost the square of
/// their count (5,000 of them take ~50 ms to bind). A builder binds each parameter once, in
/// order, so `?` means the same.
impl Placeholders for sqlx::SqliteConnection {
    fn placeholders(sql: &str) -> String {
        let mut anonymous = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
                while chars.next_if(char::is_ascii_digit).is_some() {}
                anonymous.push('?');
            } else {
                anonymous.push(c);
            }
        }
        anonymous
    }
}

impl Placeholders for sqlx::PgConnection {
    fn placeholders(sql: &str) -> String {
        sql.to_owned()
    }
}

/// Marks statement text as safe for sqlx. Only for text assembled from fixed fragments of this
/// module's code and `$n` placeholders: values never enter statement text.
pub(crate) fn trusted(sql: &str) -> sqlx::AssertSqlSafe<&str> {
    sqlx::AssertSqlSafe(sql)
}

/// `UPDATE` for a statement that writes many rows inside a transaction that a failure of that
/// statement rolls back whole.
///
/// SQLite's default (ABORT) undoes a failing statement's own changes and lets its transaction go
/// on. To be able to, a statement that may write many rows first copies each page it changes
/// into a statement journal: 16 KiB per page, dozens of pages for a claim of 256 messages. A
/// caller of this never goes on after such a failure (the error ends the transaction, which
/// rolls back), so FAIL, which stops the statement where it failed and keeps no such copy, ends
/// in the same state, and the claim's and the record's statements take ~20 % less time.
/// PostgreSQL has neither the clause nor the copy.
pub(crate) fn update_rows(dialect: super::Dialect) -> &'static str {
    match dialect {
        super::Dialect::Sqlite => "UPDATE OR FAIL",
        super::Dialect::Postgres => "UPDATE",
    }
}

/// The most parameters a statement built here binds: batches are split to stay near it, which
/// keeps statements short to parse and well under both databases' limits.
pub(crate) const PARAMS_PER_STATEMENT: usize = 1000;

/// Rows of `params_per_row` parameters that fit one statement.
pub(crate) const fn rows_per_statement(params_per_row: usize) -> usize {
    let rows = PARAMS_PER_STATEMENT / params_per_row;
    if rows == 0 { 1 } else { rows }
}

/// A value bound to a `$n` placeholder.
#[derive(Clone, Debug)]
pub(crate) enum Param {
    Id(Uuid),
    OptId(Option<Uuid>),
    Text(String),
    /// Text or NULL.
    OptText(Option<String>),
    /// Text in SQLite, `jsonb` in PostgreSQL.
    Json(serde_json::Value),
    /// Already serialised JSON, stored as [`Param::Json`] is.
    RawJson(Box<serde_json::value::RawValue>),
    Int(i64),
    /// An integer or NULL.
    OptInt(Option<i64>),
    Bool(bool),
    Time(DateTime<Utc>),
    /// A time or NULL.
    OptTime(Option<DateTime<Utc>>),
}

/// SQL text plus its parameters, in placeholder order.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    pub sql: String,
    pub params: Vec<Param>,
    /// Placeholders `$1` to `$bound_first` that the caller binds itself, before `params`
    /// (PostgreSQL arrays, which [`Param`] does not carry).
    pub bound_first: usize,
}

impl SqlBuilder {
    pub fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            params: Vec::new(),
            bound_first: 0,
        }
    }

    /// A statement whose first `count` placeholders (`$1`, …) are bound by the caller before
    /// the builder's own parameters.
    pub fn after_placeholders(count: usize, sql: &str) -> Self {
        Self {
            bound_first: count,
            ..Self::new(sql)
        }
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `param`.
    pub fn bind(&mut self, param: Param) -> &mut Self {
        self.params.push(param);
        self.sql.push('$');
        self.sql
            .push_str(&(self.bound_first + self.params.len()).to_string());
        self
    }

    /// Appends `(p1, p2, …)`; an empty list becomes `(NULL)`, which matches nothing.
    pub fn bind_list(&mut self, params: impl IntoIterator<Item = Param>) -> &mut Self {
        self.sql.push('(');
        let mut any = false;
        for (index, param) in params.into_iter().enumerate() {
            if index > 0 {
                self.sql.push_str(", ");
            }
            self.bind(param);
            any = true;
        }
        if !any {
            self.sql.push_str("NULL");
        }
        self.sql.push(')');
        self
    }
}

/// Binds a builder's parameters onto a `sqlx::query` / `query_as` / `query_scalar`.
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                $crate::store::sql::Param::Id(value) => query.bind(*value),
                $crate::store::sql::Param::OptId(value) => query.bind(*value),
                $crate::store::sql::Param::Text(value) => query.bind(value.as_str()),
                $crate::store::sql::Param::OptText(value) => query.bind(value.as_deref()),
                $crate::store::sql::Param::Json(value) => query.bind(sqlx::types::Json(value)),
                $crate::store::sql::Param::RawJson(value) => query.bind(sqlx::types::Json(value)),
                $crate::store::sql::Param::Int(value) => query.bind(*value),
                $crate::store::sql::Param::OptInt(value) => query.bind(*value),
                $crate::store::sql::Param::Bool(value) => query.bind(*value),
                $crate::store::sql::Param::OptTime(value) => query.bind(*value),
                $crate::store::sql::Param::Time(value) => query.bind(*value),
            };
        }
        query
    }};
}
pub(crate) use bind_params;

/// `LIKE` pattern for "contains `text`", with the pattern characters in `text` escaped (used
/// with `ESCAPE '\'`).
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for ch in text.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    pattern
}

/// A page of a list: page 1-based, `per_page` 1–200.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub page: u32,
    pub per_page: u32,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            page: 1,
            per_page: 50,
        }
    }
}

impl Page {
    pub const MAX_PER_PAGE: u32 = 200;

    pub fn is_valid(&self) -> bool {
        self.page >= 1 && (1..=Self::MAX_PER_PAGE).contains(&self.per_page)
    }

    pub(crate) fn limit(&self) -> i64 {
        i64::from(self.per_page.clamp(1, Self::MAX_PER_PAGE))
    }

    pub(crate) fn offset(&self) -> i64 {
        i64::from(self.page.max(1) - 1) * self.limit()
    }

    /// Appends `LIMIT … OFFSET …` as parameters.
    pub(crate) fn push_to(&self, builder: &mut SqlBuilder) {
        builder
            .push(" LIMIT ")
            .bind(Param::Int(self.limit()))
            .push(" OFFSET ")
            .bind(Param::Int(self.offset()));
    }
}

/// Runs a paged list: `SELECT {columns} {from_where} ORDER BY {order} LIMIT … OFFSET …` and the
/// matching `COUNT(*)`, on one connection.
pub(crate) async fn fetch_page<T>(
    conn: super::Conn<'_>,
    columns: &str,
    from_where: &SqlBuilder,
    order: &str,
    page: Page,
) -> super::Result<(Vec<T>, i64)>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let mut conn = conn;
    let count = SqlBuilder {
        sql: format!("SELECT COUNT(*) {}", from_where.sql),
        ..SqlBuilder::default()
    };
    let total: i64 = super::on_conn!(conn.reborrow(), c =>
        bind_params!(sqlx::query_scalar(built(&count, &*c)), &from_where.params)
            .fetch_one(&mut *c)
            .await?);
    let rows = fetch_rows(conn, columns, from_where, order, page).await?;
    Ok((rows, total))
}

/// One page of rows without their total, for a caller that knows it already (a campaign's
/// counters) and should not count a million rows to show fifty.
pub(crate) async fn fetch_rows<T>(
    conn: super::Conn<'_>,
    columns: &str,
    from_where: &SqlBuilder,
    order: &str,
    page: Page,
) -> super::Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let mut select = SqlBuilder {
        sql: format!("SELECT {columns} {} ORDER BY {order}", from_where.sql),
        params: from_where.params.clone(),
        bound_first: from_where.bound_first,
    };
    page.push_to(&mut select);
    super::on_conn!(conn, c => {
        let rows: Vec<T> = bind_params!(sqlx::query_as(built(&select, &*c)), &select.params)
            .fetch_all(&mut *c)
            .await?;
        Ok(rows)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_gets_anonymous_placeholders() {
        assert_eq!(
            <sqlx::SqliteConnection as Placeholders>::placeholders(
                "SELECT $1, '$' FROM t WHERE a IN ($2, $10) AND b = $"
            ),
            "SELECT ?, '$' FROM t WHERE a IN (?, ?) AND b = $"
        );
        assert_eq!(
            <sqlx::PgConnection as Placeholders>::placeholders("SELECT $1"),
            "SELECT $1"
        );
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut builder = SqlBuilder::new("SELECT * FROM t WHERE a = ");
        builder
            .bind(Param::Int(1))
            .push(" AND b IN ")
            .bind_list([Param::Int(2), Param::Int(3)])
            .push(" AND c IN ")
            .bind_list([]);
        assert_eq!(
            builder.sql,
            "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3) AND c IN (NULL)"
        );
        assert_eq!(builder.params.len(), 3);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(contains_pattern("JaNe"), "%jane%");
    }

    #[test]
    fn pages_turn_into_limit_and_offset() {
        let page = Page {
            page: 3,
            per_page: 20,
        };
        assert!(page.is_valid());
        assert_eq!((page.limit(), page.offset()), (20, 40));
        assert!(
            !Page {
                page: 0,
                per_page: 20
            }
            .is_valid()
        );
        assert!(
            !Page {
                page: 1,
                per_page: 201
            }
            .is_valid()
        );
    }
}
