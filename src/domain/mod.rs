//! Herald's rules, with no I/O: nothing here knows of SQL or HTTP.

/// API keys: abilities and bearer tokens stored as digests.
pub mod auth;
/// Provider callbacks in Herald's terms, and Herald's own callback signature.
pub mod callback;
/// The campaign state machine and audiences.
pub mod campaign;
/// Tags and time zones of contacts.
pub mod contact;
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
/// `<<variable>>` templates, parsed once and rendered per recipient.
pub mod template;
/// Local days and wall-clock times in a time zone, DST days included.
pub mod time;
/// Field-level validation errors.
pub mod validation;
