//! Analytics for the people who read the numbers: every answer comes from the rollups and a few
//! indexed rows (campaign counters, contact totals), cut into the caller's local dates and hours.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ServiceError, ServiceResult};
use crate::domain::analytics::{Period, local_slots_of_hour};
use crate::domain::campaign::CampaignStatus;
use crate::domain::ids::{CampaignId, SenderId, WorkspaceId};
use crate::domain::message::percentage;
use crate::domain::time::{local_day, resolve_local};
use crate::store::analytics::{self as rollups, CampaignRow};
use crate::store::{Db, StoreError, campaigns, senders};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ContactsNow {
    pub total: i64,
    pub opted_out: i64,
    pub blocked: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct SendersNow {
    pub total: i64,
    /// Senders that sent something today (local date in the zone asked for).
    pub active: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct CampaignsNow {
    pub running: i64,
    pub scheduled: i64,
    /// Campaigns started since the first of this local month.
    pub this_month: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct DirectionCounts {
    /// Messages sent.
    pub outbound: i64,
    /// Messages received.
    pub inbound: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct MessagesNow {
    pub today: DirectionCounts,
}

/// `GET /v1/analytics/overview`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Overview {
    pub contacts: ContactsNow,
    pub senders: SendersNow,
    pub campaigns: CampaignsNow,
    pub messages: MessagesNow,
}

/// The workspace today, in `zone`.
pub async fn overview(
    db: &Db,
    workspace: WorkspaceId,
    zone: Tz,
    now: DateTime<Utc>,
) -> ServiceResult<Overview> {
    let today = local_day(now, zone);
    let month_start = resolve_local(
        zone,
        today.with_day(1).unwrap_or(today).and_time(NaiveTime::MIN),
    );
    let mut conn = db.read().await?;
    let contacts = rollups::contact_totals(conn.conn(), workspace).await?;
    let senders = rollups::senders(conn.conn(), workspace).await?;
    let counts =
        rollups::sender_counts(conn.conn(), workspace, Period::day(today, zone).quarters()).await?;
    let campaigns = rollups::campaign_counts(conn.conn(), workspace, month_start).await?;
    let sum = |outcome: &str| {
        counts
            .iter()
            .filter(|count| count.outcome == outcome)
            .map(|count| count.count)
            .sum()
    };
    let active = counts
        .iter()
        .filter(|count| count.outcome == "sent" && count.count > 0)
        .count() as i64;
    Ok(Overview {
        contacts: ContactsNow {
            total: contacts.total,
            opted_out: contacts.opted_out,
            blocked: contacts.blocked,
        },
        senders: SendersNow {
            total: senders.len() as i64,
            active,
        },
        campaigns: CampaignsNow {
            running: campaigns.running,
            scheduled: campaigns.scheduled,
            this_month: campaigns.this_month,
        },
        messages: MessagesNow {
            today: DirectionCounts {
                outbound: sum("sent"),
                inbound: sum("received"),
            },
        },
    })
}

/// A campaign's results.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CampaignReport {
    pub id: CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    /// `delivered / sent × 100`, two decimals.
    pub delivery_rate: f64,
    /// `read / delivered × 100`, two decimals.
    pub read_rate: f64,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<CampaignRow> for CampaignReport {
    fn from(row: CampaignRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            status: row.status,
            sent: row.sent_count,
            delivered: row.delivered_count,
            read: row.read_count,
            failed: row.failed_count,
            delivery_rate: percentage(row.delivered_count, row.sent_count),
            read_rate: percentage(row.read_count, row.delivered_count),
            started_at: row.started_at,
            completed_at: row.completed_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CampaignsSummary {
    pub campaigns: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    pub delivery_rate: f64,
    pub read_rate: f64,
}

/// `GET /v1/analytics/campaigns`: the campaigns that started in the period.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CampaignsReport {
    pub summary: CampaignsSummary,
    /// Newest first, at most 1,000 (the summary counts them all).
    pub campaigns: Vec<CampaignReport>,
}

pub async fn campaigns(
    db: &Db,
    workspace: WorkspaceId,
    period: Period,
) -> ServiceResult<CampaignsReport> {
    let instants = period.instants();
    let mut conn = db.read().await?;
    let totals = rollups::campaign_totals(conn.conn(), workspace, instants).await?;
    let rows = rollups::campaigns_started(conn.conn(), workspace, instants).await?;
    Ok(CampaignsReport {
        summary: CampaignsSummary {
            campaigns: totals.campaigns,
            sent: totals.sent,
            delivered: totals.delivered,
            read: totals.read,
            failed: totals.failed,
            delivery_rate: percentage(totals.delivered, totals.sent),
            read_rate: percentage(totals.read, totals.delivered),
        },
        campaigns: rows.into_iter().map(CampaignReport::from).collect(),
    })
}

/// A sender's messages in a period.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SenderReport {
    pub id: SenderId,
    pub name: String,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
    /// Inbound messages received.
    pub inbound: i64,
    pub delivery_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SendersReport {
    pub senders: Vec<SenderReport>,
}

/// Every sender of the workspace (oldest first), with what happened to its messages in the
/// period, each step counted when it happened.
pub async fn senders(
    db: &Db,
    workspace: WorkspaceId,
    period: Period,
) -> ServiceResult<SendersReport> {
    let mut conn = db.read().await?;
    let senders = rollups::senders(conn.conn(), workspace).await?;
    let counts = rollups::sender_counts(conn.conn(), workspace, period.quarters()).await?;
    let mut by_sender: HashMap<(SenderId, &str), i64> = HashMap::new();
    for count in &counts {
        *by_sender
            .entry((count.sender_id, count.outcome.as_str()))
            .or_default() += count.count;
    }
    let senders = senders
        .into_iter()
        .map(|(id, name)| {
            let get = |outcome| by_sender.get(&(id, outcome)).copied().unwrap_or(0);
            SenderReport {
                id,
                name,
                sent: get("sent"),
                delivered: get("delivered"),
                read: get("read"),
                failed: get("failed"),
                inbound: get("received"),
                delivery_rate: percentage(get("delivered"), get("sent")),
            }
        })
        .collect();
    Ok(SendersReport { senders })
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct GrowthDay {
    pub date: NaiveDate,
    pub new: i64,
}

/// `GET /v1/analytics/contacts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ContactsReport {
    /// Contacts now.
    pub total: i64,
    /// Contacts created in the period (and still there).
    pub new: i64,
    /// Contacts that opted out in the period and have not opted back in.
    pub opted_out: i64,
    /// New contacts on each date of the period, zeros included.
    pub growth: Vec<GrowthDay>,
}

pub async fn contacts(
    db: &Db,
    workspace: WorkspaceId,
    period: Period,
) -> ServiceResult<ContactsReport> {
    let quarters = period.quarters();
    let mut conn = db.read().await?;
    let totals = rollups::contact_totals(conn.conn(), workspace).await?;
    let hours = rollups::contacts_by_hour(conn.conn(), workspace, quarters.hours()).await?;
    let mut growth: BTreeMap<NaiveDate, i64> = period.dates().map(|date| (date, 0)).collect();
    let (mut new, mut opted_out) = (0, 0);
    for (hour, (date, _), count) in in_period(&hours, period) {
        match hour.outcome.as_str() {
            "created" => {
                new += count;
                *growth.entry(date).or_default() += count;
            }
            "opted_out" => opted_out += count,
            _ => {}
        }
    }
    Ok(ContactsReport {
        total: totals.total,
        new,
        opted_out,
        growth: growth
            .into_iter()
            .map(|(date, new)| GrowthDay { date, new })
            .collect(),
    })
}

/// Each non-zero quarter of `hours` inside the period, with its row and the local date and hour
/// it falls in.
fn in_period(
    hours: &[rollups::HourCounts],
    period: Period,
) -> impl Iterator<Item = (&rollups::HourCounts, (NaiveDate, u32), i64)> {
    let quarters = period.quarters();
    hours.iter().flat_map(move |hour| {
        let local = local_slots_of_hour(period.zone, hour.hour);
        hour.quarters()
            .zip(local)
            .filter(move |&((quarter, count), _)| count != 0 && quarters.contains(quarter))
            .map(move |((_, count), slot)| (hour, slot, count))
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityDirection {
    Outbound,
    Inbound,
}

/// Messages sent or received in one local hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ActivitySlot {
    #[serde(serialize_with = "crate::domain::time::serialize_date")]
    pub date: NaiveDate,
    /// 0–23, in the zone asked for.
    pub hour: u32,
    pub direction: ActivityDirection,
    pub count: i64,
}

/// Sends and inbound messages by local date and hour, only the hours that had some. On the day
/// clocks go back, the repeated hour's two occurrences are one slot.
pub async fn activity(
    db: &Db,
    workspace: WorkspaceId,
    period: Period,
    sender: Option<SenderId>,
) -> ServiceResult<Vec<ActivitySlot>> {
    let quarters = period.quarters();
    let mut conn = db.read().await?;
    if let Some(sender) = sender {
        match senders::get(conn.conn(), workspace, sender).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => {
                return Err(ServiceError::validation("sender_id", "no such sender"));
            }
            Err(error) => return Err(error.into()),
        }
    }
    let hours = rollups::activity_by_hour(conn.conn(), workspace, quarters.hours(), sender).await?;
    Ok(activity_in_local_hours(&hours, period))
}

/// `hours` (UTC, in order) as the period's local hours, sends and inbound messages of each.
fn activity_in_local_hours(hours: &[rollups::ActivityHour], period: Period) -> Vec<ActivitySlot> {
    let quarters = period.quarters();
    // Local hours come in order but for the hour repeated when clocks go back: gather each
    // quarter's as they come, then a stable sort (which finds them almost sorted) and a merge
    // of equal neighbours.
    let mut local_hours: Vec<((NaiveDate, u32), i64, i64)> = Vec::with_capacity(hours.len());
    for row in hours {
        let slots = local_slots_of_hour(period.zone, row.hour);
        let counts = row.sent.into_iter().zip(row.received).zip(slots);
        for (index, ((sent, received), slot)) in counts.enumerate() {
            if (sent == 0 && received == 0) || !quarters.contains(row.hour * 4 + index as i64) {
                continue;
            }
            local_hours.push((slot, sent, received));
        }
    }
    local_hours.sort_by_key(|&(slot, _, _)| slot);
    local_hours.dedup_by(|(slot, sent, received), (kept, kept_sent, kept_received)| {
        let same = slot == kept;
        if same {
            *kept_sent += *sent;
            *kept_received += *received;
        }
        same
    });
    local_hours
        .into_iter()
        .flat_map(|((date, hour), sent, received)| {
            [
                (ActivityDirection::Outbound, sent),
                (ActivityDirection::Inbound, received),
            ]
            .into_iter()
            .filter(|&(_, count)| count != 0)
            .map(move |(direction, count)| ActivitySlot {
                date,
                hour,
                direction,
                count,
            })
        })
        .collect()
}

/// The width of a timeline's buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Minute,
    #[default]
    Hour,
}

/// What happened to a campaign's messages in one bucket (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct TimelinePoint {
    #[serde(serialize_with = "crate::domain::time::serialize_utc")]
    pub at: DateTime<Utc>,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
}

/// A campaign's timeline, the buckets where something happened, in order.
pub async fn timeline(
    db: &Db,
    workspace: WorkspaceId,
    campaign: CampaignId,
    bucket: Bucket,
) -> ServiceResult<Vec<TimelinePoint>> {
    let mut conn = db.read().await?;
    // Another workspace's campaign is not found.
    campaigns::get(conn.conn(), workspace, campaign).await?;
    let rows = rollups::timeline(conn.conn(), campaign, bucket == Bucket::Hour).await?;
    Ok(rows
        .into_iter()
        .map(|row| TimelinePoint {
            at: DateTime::from_timestamp(row.minute * 60, 0).unwrap_or_default(),
            sent: row.sent,
            delivered: row.delivered,
            read: row.read,
            failed: row.failed,
        })
        .collect())
}

/// Messages waiting to be sent or in flight, across every workspace (the metrics' queue depth).
pub async fn queue_depth(db: &Db) -> ServiceResult<i64> {
    let mut conn = db.read().await?;
    Ok(rollups::queue_depth(conn.conn()).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour_of(at: &str) -> i64 {
        at.parse::<DateTime<Utc>>().unwrap().timestamp() / 3600
    }

    fn row(at: &str, sent: [i64; 4], received: [i64; 4]) -> rollups::ActivityHour {
        rollups::ActivityHour {
            hour: hour_of(at),
            sent,
            received,
        }
    }

    fn period(from: &str, to: &str, zone: &str) -> Period {
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        Period::parse(Some(from), Some(to), Some(zone), now).unwrap()
    }

    fn slots(slots: &[ActivitySlot]) -> Vec<(String, u32, ActivityDirection, i64)> {
        slots
            .iter()
            .map(|slot| (slot.date.to_string(), slot.hour, slot.direction, slot.count))
            .collect()
    }

    #[test]
    fn the_hour_repeated_when_clocks_go_back_is_one_slot() {
        use ActivityDirection::{Inbound, Outbound};
        // New York, 1 November 2026: 01:00–02:00 comes twice, at 05:00 and 06:00 UTC.
        let hours = [
            row("2026-11-01T04:00:00Z", [1, 0, 0, 0], [0; 4]),
            row("2026-11-01T05:00:00Z", [2, 0, 0, 1], [0, 4, 0, 0]),
            row("2026-11-01T06:00:00Z", [0, 8, 0, 0], [0; 4]),
            row("2026-11-01T07:00:00Z", [0; 4], [16, 0, 0, 0]),
        ];
        let activity = activity_in_local_hours(
            &hours,
            period("2026-11-01", "2026-11-01", "America/New_York"),
        );
        assert_eq!(
            slots(&activity),
            [
                ("2026-11-01".into(), 0, Outbound, 1),
                ("2026-11-01".into(), 1, Outbound, 11),
                ("2026-11-01".into(), 1, Inbound, 4),
                ("2026-11-01".into(), 2, Inbound, 16),
            ]
        );
    }

    #[test]
    fn a_two_hour_fall_back_meets_its_repeated_hour_again_after_another() {
        use ActivityDirection::Outbound;
        // Troll (Antarctica) goes from UTC+2 to UTC+0 at 01:00 UTC on 25 October 2026: local
        // 02:00 (00:00 UTC), then 01:00 (01:00 UTC), then 02:00 again (02:00 UTC).
        let hours = [
            row("2026-10-25T00:00:00Z", [1, 0, 0, 0], [0; 4]),
            row("2026-10-25T01:00:00Z", [2, 0, 0, 0], [0; 4]),
            row("2026-10-25T02:00:00Z", [4, 0, 0, 0], [0; 4]),
        ];
        let activity = activity_in_local_hours(
            &hours,
            period("2026-10-25", "2026-10-25", "Antarctica/Troll"),
        );
        assert_eq!(
            slots(&activity),
            [
                ("2026-10-25".into(), 1, Outbound, 2),
                ("2026-10-25".into(), 2, Outbound, 5),
            ]
        );
    }

    #[test]
    fn a_half_hour_zone_splits_each_utc_hour_and_the_period_cuts_at_local_midnight() {
        use ActivityDirection::Outbound;
        // Kolkata is UTC+05:30: 18:00–18:30 UTC on 30 November is 23:30–24:00 there, outside a
        // period of 1 December; 18:30–19:00 is 00:00–00:30 on 1 December.
        let hours = [row("2026-11-30T18:00:00Z", [1, 2, 4, 8], [0; 4])];
        let activity =
            activity_in_local_hours(&hours, period("2026-12-01", "2026-12-01", "Asia/Kolkata"));
        assert_eq!(slots(&activity), [("2026-12-01".into(), 0, Outbound, 12)]);
        let both_days =
            activity_in_local_hours(&hours, period("2026-11-30", "2026-12-01", "Asia/Kolkata"));
        assert_eq!(
            slots(&both_days),
            [
                ("2026-11-30".into(), 23, Outbound, 3),
                ("2026-12-01".into(), 0, Outbound, 12),
            ]
        );
    }
}
