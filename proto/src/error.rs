use tonic::Status;

/// Wire data that does not make a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A required field is absent (or is the UNSPECIFIED enum value).
    #[error("field {field} is missing: set it")]
    Missing { field: &'static str },
    /// A field is present but its value is not acceptable.
    #[error("field {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A field present with an unacceptable value, and why.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Every wire-validation failure is the caller's: INVALID_ARGUMENT with the reason.
impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::invalid_argument(e.to_string())
    }
}
