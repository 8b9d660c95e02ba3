//! Message-size bounds shared by every server and client of the contract.

/// Largest encoded gRPC message a service accepts or sends (set on both sides; tonic's
/// default receive limit of 4 MiB is too small for a trajectory of a long episode).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Largest checkpoint chunk, in bytes of data: streaming in 1 MiB pieces is the fastest
/// measured on loopback (FIELD-NOTES) and keeps every message far below the limit.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// Smallest checkpoint chunk a download gets, whatever it asks for: each chunk size a
/// client asks for makes the coordinator keep 32 bytes of digest per chunk of the blob, so
/// tiny chunks would cost it memory far beyond the blob (issue 17).
pub const MIN_CHUNK_BYTES: usize = 64 << 10;

/// The chunk size a download asking for `wanted` bytes gets: 0 means the largest; else
/// the next power of two, from [`MIN_CHUNK_BYTES`] to [`MAX_CHUNK_BYTES`] (so at most five
/// layouts per blob exist).
pub fn chunk_bytes(wanted: u32) -> usize {
    match usize::try_from(wanted).unwrap_or(usize::MAX) {
        0 => MAX_CHUNK_BYTES,
        n => n
            .clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
            .next_power_of_two()
            .min(MAX_CHUNK_BYTES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_few_and_bounded() {
        assert_eq!(chunk_bytes(0), MAX_CHUNK_BYTES);
        assert_eq!(chunk_bytes(1), MIN_CHUNK_BYTES);
        assert_eq!(chunk_bytes(100_000), 128 << 10);
        assert_eq!(chunk_bytes(u32::MAX), MAX_CHUNK_BYTES);
        let sizes: std::collections::BTreeSet<usize> = (0..=u32::from(u16::MAX) * 32)
            .step_by(997)
            .map(chunk_bytes)
            .collect();
        assert!(sizes.len() <= 5, "{sizes:?}");
    }
}
