//! Which `(actor lease, sequence)` keys the learner already holds, and which journal records
//! are consumed: both compact "everything up to a watermark, plus a set above it" sets,
//! saved in the learner's state file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Keys above a lease's watermark kept before the watermark is forced up (an actor that
/// dropped unsent trajectories leaves gaps that would otherwise stay forever).
const MAX_ABOVE: usize = 65_536;

/// A set of `u64`: every value below `below`, plus `above`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarked {
    /// Every value `< below` is in the set.
    pub below: u64,
    /// Members `> below` (sorted).
    pub above: BTreeSet<u64>,
}

impl Watermarked {
    pub fn contains(&self, value: u64) -> bool {
        value < self.below || self.above.contains(&value)
    }

    /// Adds `value`; false if it was already in.
    pub fn insert(&mut self, value: u64) -> bool {
        if self.contains(value) {
            return false;
        }
        self.above.insert(value);
        while self.above.remove(&self.below) {
            self.below += 1;
        }
        true
    }

    fn force_bound(&mut self, max_above: usize) {
        while self.above.len() > max_above {
            let Some(first) = self.above.pop_first() else {
                break;
            };
            self.below = first + 1;
            while self.above.remove(&self.below) {
                self.below += 1;
            }
        }
    }

    pub fn len_above(&self) -> usize {
        self.above.len()
    }
}

/// The de-duplication keys: per actor lease, the sequences received (sequences start at 1;
/// 0 is never a real key and counts as seen).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedupe {
    leases: BTreeMap<String, Watermarked>,
}

impl Dedupe {
    pub fn contains(&self, lease: &str, sequence: u64) -> bool {
        sequence == 0 || self.leases.get(lease).is_some_and(|w| w.contains(sequence))
    }

    /// Records the key; false if it was already there.
    pub fn insert(&mut self, lease: &str, sequence: u64) -> bool {
        if self.contains(lease, sequence) {
            return false;
        }
        let seen = self.leases.entry(lease.to_string()).or_insert(Watermarked {
            below: 1,
            above: BTreeSet::new(),
        });
        let added = seen.insert(sequence);
        seen.force_bound(MAX_ABOVE);
        added
    }

    /// Actor leases with keys.
    pub fn leases(&self) -> usize {
        self.leases.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contiguous_keys_compact_to_a_watermark() {
        let mut d = Dedupe::default();
        assert!(d.insert("a", 2));
        assert!(d.insert("a", 1));
        assert!(d.insert("a", 3));
        assert!(!d.insert("a", 2));
        assert!(d.contains("a", 3) && !d.contains("a", 4) && !d.contains("b", 1));
        assert_eq!(d.leases["a"].below, 4);
        assert_eq!(d.leases["a"].len_above(), 0);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Dedupe>(&json).unwrap(), d);
    }

    #[test]
    fn gaps_are_bounded_by_forcing_the_watermark_up() {
        let mut w = Watermarked::default();
        for v in (0..100).step_by(2) {
            w.insert(v);
        }
        w.force_bound(10);
        assert_eq!(w.len_above(), 10);
        assert!(w.contains(1), "below the forced watermark counts as seen");
        assert!(w.contains(98) && !w.contains(99));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_a_plain_set(values in proptest::collection::vec(0u64..64, 0..200)) {
            let mut w = Watermarked::default();
            let mut plain = BTreeSet::new();
            for v in values {
                prop_assert_eq!(w.insert(v), plain.insert(v));
            }
            for v in 0..70 {
                prop_assert_eq!(w.contains(v), plain.contains(&v));
            }
        }
    }
}
