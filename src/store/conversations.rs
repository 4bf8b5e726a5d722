//! When each phone last wrote to each sender: WhatsApp's customer-service window opens with
//! every inbound message (`messages::insert_inbound` records it) and lasts 24 hours. The
//! platform's id of that message is kept too: a typing indicator answers it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::sql::{Param, SqlBuilder, bind_params, rows_per_statement};
use super::{Conn, Result, on_conn};
use crate::domain::ids::SenderId;

/// Of `phones`, those that wrote to `sender` after `since`.
pub async fn wrote_since(
    mut conn: Conn<'_>,
    sender: SenderId,
    phones: &[&str],
    since: DateTime<Utc>,
) -> Result<HashSet<String>> {
    let mut open = HashSet::new();
    for chunk in phones.chunks(rows_per_statement(1).saturating_sub(2).max(1)) {
        let mut select = SqlBuilder::new("SELECT phone FROM conversations WHERE sender_id = ");
        select
            .bind(Param::Id(sender.0))
            .push(" AND last_inbound_at > ")
            .bind(Param::Time(since))
            .push(" AND phone IN ")
            .bind_list(chunk.iter().map(|phone| Param::Text((*phone).to_owned())));
        let phones: Vec<String> = on_conn!(conn.reborrow(), c => bind_params!(sqlx::query_scalar(super::sql::built(&select, &*c)), &select.params)
            .fetch_all(&mut *c)
            .await?);
        open.extend(phones);
    }
    Ok(open)
}

/// The platform's id of the last message `phone` wrote to `sender`, if it wrote after `since`
/// and the platform gave the message an id.
pub async fn last_inbound_id(
    conn: Conn<'_>,
    sender: SenderId,
    phone: &str,
    since: DateTime<Utc>,
) -> Result<Option<String>> {
    let id: Option<Option<String>> = on_conn!(conn, c => sqlx::query_scalar(
        "SELECT last_inbound_id FROM conversations
         WHERE sender_id = $1 AND phone = $2 AND last_inbound_at > $3",
    )
    .bind(sender)
    .bind(phone)
    .bind(since)
    .fetch_optional(&mut *c)
    .await?);
    Ok(id.flatten())
}
