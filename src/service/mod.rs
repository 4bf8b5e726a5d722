//! Services own the rules: the HTTP handlers, the CLI, `demo` and `bench` parse input, call a
//! service and present its answer, so a rule (an unfillable variable, an impossible schedule) is
//! enforced the same way whoever asks. A service takes the store and the time, and answers with
//! domain errors; it knows nothing of HTTP.

use crate::domain::validation::FieldErrors;
use crate::store::StoreError;

/// Campaigns: checks, the state machine's moves, and the one way a campaign is launched.
pub mod campaigns;
/// What a campaign or a single message sends: content, template and media checked.
pub mod templates;

/// Why a service refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input breaks a rule; each field says which.
    #[error("validation failed: {0}")]
    Validation(FieldErrors),
    /// Not found, refused by the state machine, a duplicate, or the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FieldErrors> for ServiceError {
    fn from(errors: FieldErrors) -> Self {
        Self::Validation(errors)
    }
}

impl ServiceError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::single(field, message))
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
