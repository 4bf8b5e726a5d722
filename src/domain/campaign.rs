//! The campaign state machine and audience definitions.
//!
//! ```text
//! draft → scheduled → running ⇄ paused → completed
//! draft → running ("start now");  scheduled | running | paused → canceled
//! ```
//! Each transition is applied in SQL as one compare-and-set over [`CampaignStatus::sources_of`],
//! so two processes can never both win it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::{ContactId, GroupId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Scheduled,
    Running,
    Paused,
    Canceled,
    Completed,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 6] = [
        Self::Draft,
        Self::Scheduled,
        Self::Running,
        Self::Paused,
        Self::Canceled,
        Self::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Canceled => "canceled",
            Self::Completed => "completed",
        }
    }

    /// The statuses a campaign may be in for a move to `target`; empty when nothing leads there.
    /// Scheduling again while scheduled moves the launch time, so `scheduled` leads to itself.
    pub fn sources_of(target: CampaignStatus) -> &'static [CampaignStatus] {
        use CampaignStatus::*;
        match target {
            Draft => &[],
            Scheduled => &[Draft, Scheduled],
            Running => &[Draft, Scheduled, Paused],
            Paused => &[Running],
            Canceled => &[Scheduled, Running, Paused],
            Completed => &[Running, Paused],
        }
    }

    pub fn can_become(self, target: CampaignStatus) -> bool {
        Self::sources_of(target).contains(&self)
    }

    /// Only campaigns that have not started can change their content or audience.
    pub fn is_editable(self) -> bool {
        matches!(self, Self::Draft | Self::Scheduled)
    }

    /// A campaign with sends behind it or ahead of it keeps its record until it ends.
    pub fn is_deletable(self) -> bool {
        matches!(self, Self::Draft | Self::Scheduled | Self::Canceled)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Canceled | Self::Completed)
    }
}

/// A campaign's counters and the rates derived from them.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignStats {
    pub status: CampaignStatus,
    pub counters: super::message::Counters,
    pub delivery_rate: f64,
    pub read_rate: f64,
}

impl fmt::Display for CampaignStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown campaign status '{0}'")]
pub struct UnknownStatus(pub String);

impl FromStr for CampaignStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Who a campaign is sent to. Opted-out and blocked contacts are always left out, and a contact
/// reached by several routes receives one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Audience {
    All,
    Group {
        group_id: GroupId,
    },
    /// Contacts carrying any of these tags.
    Tags {
        tags: Vec<String>,
    },
    Contacts {
        contact_ids: Vec<ContactId>,
    },
}

#[cfg(test)]
mod tests {
    use super::CampaignStatus::*;
    use super::*;

    /// The whole table of DESIGN.md, written out independently of `sources_of`.
    const ALLOWED: &[(CampaignStatus, CampaignStatus)] = &[
        (Draft, Scheduled),
        (Draft, Running),
        (Scheduled, Scheduled),
        (Scheduled, Running),
        (Scheduled, Canceled),
        (Running, Paused),
        (Running, Canceled),
        (Running, Completed),
        (Paused, Running),
        (Paused, Canceled),
        (Paused, Completed),
    ];

    #[test]
    fn every_pair_is_allowed_or_refused_as_designed() {
        for from in CampaignStatus::ALL {
            for to in CampaignStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    ALLOWED.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn finished_campaigns_never_move_again() {
        for from in [Canceled, Completed] {
            assert!(CampaignStatus::ALL.iter().all(|&to| !from.can_become(to)));
        }
    }

    #[test]
    fn edit_and_delete_rules() {
        let editable: Vec<_> = CampaignStatus::ALL
            .into_iter()
            .filter(|s| s.is_editable())
            .collect();
        assert_eq!(editable, [Draft, Scheduled]);
        let deletable: Vec<_> = CampaignStatus::ALL
            .into_iter()
            .filter(|s| s.is_deletable())
            .collect();
        assert_eq!(deletable, [Draft, Scheduled, Canceled]);
    }

    #[test]
    fn statuses_round_trip_through_text_and_json() {
        for status in CampaignStatus::ALL {
            assert_eq!(status.as_str().parse::<CampaignStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!("started".parse::<CampaignStatus>().is_err());
    }

    #[test]
    fn audiences_use_the_api_shape() {
        let audience: Audience =
            serde_json::from_str(r#"{"type": "tags", "tags": ["vip", "new"]}"#).unwrap();
        assert_eq!(
            audience,
            Audience::Tags {
                tags: vec!["vip".into(), "new".into()]
            }
        );
        let all: Audience = serde_json::from_str(r#"{"type": "all"}"#).unwrap();
        assert_eq!(all, Audience::All);
        assert!(serde_json::from_str::<Audience>(r#"{"type": "group"}"#).is_err());
    }
}
