//! Errors to gRPC status codes, in one place.

use tonic::{Code, Status};

use crate::error::Error;

/// The gRPC code of each error: the caller's mistakes are INVALID_ARGUMENT, NOT_FOUND,
/// FAILED_PRECONDITION, ALREADY_EXISTS or PERMISSION_DENIED; the coordinator's own
/// troubles are UNAVAILABLE or INTERNAL (details logged, not sent).
pub fn code(e: &Error) -> Code {
    match e {
        Error::Core(e) if e.is_invalid_input() => Code::InvalidArgument,
        Error::InvalidId(_) | Error::UploadMismatch { .. } => Code::InvalidArgument,
        Error::UnknownBlob(_) | Error::UnknownLease(_) | Error::UnknownMember(_) => Code::NotFound,
        Error::WrongRole { .. } => Code::PermissionDenied,
        Error::StaleVersion { .. } => Code::FailedPrecondition,
        Error::VersionConflict { .. } | Error::DuplicateMember(_) => Code::AlreadyExists,
        Error::ShuttingDown => Code::Unavailable,
        Error::TooManyLeases { .. } => Code::ResourceExhausted,
        Error::Core(_)
        | Error::Io { .. }
        | Error::Registry { .. }
        | Error::HashMismatch { .. }
        | Error::BlobTruncated { .. }
        | Error::BlobCorrupted { .. }
        | Error::RunState { .. }
        | Error::Inconsistent(_)
        | Error::Serve { .. }
        | Error::Runtime(_) => Code::Internal,
    }
}

/// The status sent for `e`. Internal errors keep their details in the log only.
pub fn to_status(e: impl Into<Error>) -> Status {
    let e = e.into();
    let code = code(&e);
    if code == Code::Internal {
        tracing::error!(error = %e, "internal error");
        Status::internal("internal error in the coordinator; see its log")
    } else {
        Status::new(code, e.to_string())
    }
}
