//! Herald's rules, with no I/O: nothing here knows of SQL or HTTP.

/// An enum stored and shown as its snake_case name: `as_str`, `ALL`, `Display`, and `FromStr`
/// refusing any other name (so a stored value that does not parse is an error, never a default).
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::domain::UnknownName;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text).ok_or_else(|| {
                    crate::domain::UnknownName { kind: stringify!($name), name: text.to_owned() }
                })
            }
        }
    };
}
pub(crate) use named_enum;

/// A name that none of an enum's values has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not a known {kind}")]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
}

/// Periods of local dates and the rollups' quarter hours they cover.
pub mod analytics;
/// API keys: abilities and bearer tokens stored as digests.
pub mod auth;
/// Opt-out keywords and the rules that answer inbound messages.
pub mod automation;
/// Provider callbacks in Herald's terms, and Herald's own callback signature.
pub mod callback;
/// The campaign state machine and audiences.
pub mod campaign;
/// Tags and time zones of contacts.
pub mod contact;
/// When a campaign should finish under its sender's pacing.
pub mod estimate;
/// The kinds of events in the event log and their payloads.
pub mod event;
/// Static and dynamic contact groups.
pub mod group;
/// Typed identifiers for every kind of row.
pub mod ids;
/// A message's lifecycle and the counters derived from it.
pub mod message;
/// A sender's pacing settings and the warmup ramp.
pub mod pacing;
/// Phone numbers in E.164.
pub mod phone;
/// The platforms senders send through.
pub mod provider;
/// API keys' request quotas: the periods they count in.
pub mod quota;
/// `<<variable>>` templates, parsed once and rendered per recipient.
pub mod template;
/// Local days and wall-clock times in a time zone, DST days included.
pub mod time;
/// Field-level validation errors.
pub mod validation;
/// Outbound webhooks: event patterns, Standard Webhooks signatures, the retry schedule.
pub mod webhook;
/// A template's WhatsApp part: the template approved at Meta, rendered per contact.
pub mod whatsapp;
