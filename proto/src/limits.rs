//! Message-size bounds shared by every server and client of the contract.

/// Largest encoded gRPC message a service accepts or sends (set on both sides; tonic's
/// default receive limit of 4 MiB is too small for a trajectory of a long episode).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Largest checkpoint chunk, in bytes of data: streaming in 1 MiB pieces is the fastest
/// measured on loopback (FIELD-NOTES) and keeps every message far below the limit.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
