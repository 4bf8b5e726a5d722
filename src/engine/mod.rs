//! The dispatch engine: launching campaigns at their time, sender lanes that pace and send,
//! and the ingestion of what providers report back.

/// Provider callbacks: verification and the one ingestion path.
pub mod callbacks;
/// The pacing gates as exact functions of time.
pub mod pacing;
