//! Typed identifiers: a `ContactId` can never be passed where a `WorkspaceId` is expected, which is
//! what keeps every query scoped to the right workspace.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_types {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7): new rows append to the end of their index.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    )*};
}

id_types! {
    /// A tenant: every row belongs to exactly one.
    WorkspaceId,
    /// An API key; its public half is part of the bearer token.
    ApiKeyId,
    ContactId,
    GroupId,
    TemplateId,
    /// One sending identity (one WhatsApp number).
    SenderId,
    CampaignId,
    /// Also the idempotency key Herald gives providers.
    MessageId,
    /// A CSV import of contacts.
    ImportId,
    /// A rule that answers inbound messages.
    AutomationId,
    /// One reply an automation sent.
    AutomationRunId,
    /// An endpoint outbound webhooks are delivered to.
    WebhookId,
    /// One event's delivery to one endpoint, with its attempts.
    DeliveryId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = ContactId::generate();
        assert_eq!(id.to_string().parse::<ContactId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ContactId>(&json).unwrap(), id);
    }

    #[test]
    fn generated_ids_are_time_ordered() {
        let first = MessageId::generate();
        let second = MessageId::generate();
        assert!(first < second);
        assert_eq!(first.0.get_version_num(), 7);
    }
}
