//! The ARLAS wire contract, package `arlas.v1`: the messages and gRPC services that the
//! coordinator, learners and actors speak, generated from `proto/arlas/v1/*.proto` (the
//! `.proto` files are the public contract; any language can talk to a cluster with them).
//!
//! Layout:
//! - [`v1`]: generated messages, `coordinator_{client,server}` and `learner_{client,server}`;
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC server reflection;
//! - [`codec`]: the prost codec every service uses (malformed bytes → INVALID_ARGUMENT);
//! - [`limits`]: message and chunk size bounds, the same on both sides;
//! - [`Error`]: why wire data was rejected; converts into an INVALID_ARGUMENT `Status`.
//!
//! ```
//! use arlas_proto::v1;
//! let chunk = v1::CheckpointChunk { offset: 0, data: vec![1, 2, 3], ..Default::default() };
//! assert!(chunk.data.len() <= arlas_proto::limits::MAX_CHUNK_BYTES);
//! assert_eq!(v1::Player::Attacker.as_str_name(), "PLAYER_ATTACKER");
//! ```

pub mod codec;
mod error;
pub mod limits;

pub use error::{Error, Result};

/// Generated code of package `arlas.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("arlas.v1");
}

/// Encoded `FileDescriptorSet` of package `arlas.v1`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("arlas_v1_descriptor");

/// A required `Player` enum field: agent or attacker, never UNSPECIFIED or unknown.
pub fn player(field: &'static str, raw: i32) -> Result<v1::Player> {
    match v1::Player::try_from(raw) {
        Ok(v1::Player::Unspecified) => Err(Error::Missing { field }),
        Ok(p) => Ok(p),
        Err(_) => Err(Error::Invalid {
            field,
            reason: format!("unknown player value {raw}: use PLAYER_AGENT or PLAYER_ATTACKER"),
        }),
    }
}

/// A required `Role` enum field: actor or learner, never UNSPECIFIED or unknown.
pub fn role(field: &'static str, raw: i32) -> Result<v1::Role> {
    match v1::Role::try_from(raw) {
        Ok(v1::Role::Unspecified) => Err(Error::Missing { field }),
        Ok(r) => Ok(r),
        Err(_) => Err(Error::Invalid {
            field,
            reason: format!("unknown role value {raw}: use ROLE_ACTOR or ROLE_LEARNER"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_reject_unspecified_and_unknown_values() {
        assert_eq!(player("p", 1), Ok(v1::Player::Agent));
        assert_eq!(player("p", 0), Err(Error::Missing { field: "p" }));
        assert!(matches!(player("p", 7), Err(Error::Invalid { .. })));
        assert_eq!(role("r", 2), Ok(v1::Role::Learner));
        assert!(role("r", 0).is_err() && role("r", -1).is_err());
    }

    #[test]
    fn descriptor_set_names_both_services() {
        let text = String::from_utf8_lossy(FILE_DESCRIPTOR_SET);
        assert!(text.contains("Coordinator") && text.contains("Learner"));
    }
}
