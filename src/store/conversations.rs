//! When each phone last wrote to each sender: WhatsApp's customer-service window opens with
//! every inbound message (`messages::insert_inbound` records it) and lasts 24 hours.

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
