//! Validated identifiers of server-owned things: checkpoint blobs and leases. Both are
//! checked once where they enter (the wire, the disk); inside they are plain values that
//! can never name a path outside the store.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A checkpoint blob's id: the lowercase hex sha256 of its bytes (64 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobId(String);

impl BlobId {
    /// Validates `text` as a sha256 hex digest (lowercase, 64 characters).
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(text.to_string()))
        } else {
            Err(Error::invalid(
                "checkpoint sha256",
                format!("{text:?} is not a lowercase hex sha256 digest (64 characters of 0-9a-f)"),
            ))
        }
    }

    /// The id of a finished sha256 digest.
    pub fn from_digest(digest: &[u8]) -> Self {
        Self(hex::encode(digest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BlobId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<BlobId> for String {
    fn from(id: BlobId) -> Self {
        id.0
    }
}

/// A lease id: 32 lowercase hex characters, drawn at random by the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(String);

impl LeaseId {
    /// A fresh random id (128 bits).
    pub fn random() -> Self {
        let bytes: [u8; 16] = rand::rng().random();
        Self(hex::encode(bytes))
    }

    /// Validates a lease id received from a client.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(text.to_string()))
        } else {
            Err(Error::invalid(
                "lease_id",
                format!("{text:?} is not a lease id (32 lowercase hex characters from Register)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_hex_digests_are_blob_ids() {
        let good = "a".repeat(64);
        assert!(BlobId::parse(&good).is_ok());
        for bad in [
            "",
            "../../etc/passwd",
            &"A".repeat(64),
            &"a".repeat(63),
            &format!("{}/", "a".repeat(63)),
            &format!("..{}", "a".repeat(62)),
        ] {
            assert!(BlobId::parse(bad).is_err(), "{bad:?}");
        }
        let lease = LeaseId::random();
        assert_eq!(LeaseId::parse(lease.as_str()).unwrap(), lease);
        assert!(LeaseId::parse("../x").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// One character off a valid digest, anywhere: accepted only if it is still hex,
        /// and an accepted id is always a single plain path component.
        #[test]
        fn one_bad_character_anywhere_is_refused(
            at in 0usize..64,
            c in prop::sample::select(vec!['/', '\\', '.', 'A', 'g', ' ', '\0', 'é', '7', 'f']),
        ) {
            let mut text: Vec<char> = "0123456789abcdef".repeat(4).chars().collect();
            text[at] = c;
            let text: String = text.into_iter().collect();
            let parsed = BlobId::parse(&text);
            prop_assert_eq!(parsed.is_ok(), c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
            if let Ok(id) = parsed {
                prop_assert_eq!(std::path::Path::new(id.as_str()).components().count(), 1);
            }
        }
    }
}
