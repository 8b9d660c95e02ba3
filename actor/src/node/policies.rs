//! The policies an actor holds: the current agent, the current attacker, and the
//! population members it was assigned, each tagged with the version and checkpoint it was
//! loaded from. Generic over the loaded thing so the bookkeeping is tested without models.

use std::collections::{BTreeMap, BTreeSet};

use arlas_core::{BlobRef, Member, PerPlayer, Player, PolicyVersion};
use arlas_policy::Policy;

/// A policy and where it came from.
#[derive(Debug)]
pub struct Loaded<P> {
    pub version: u64,
    pub checkpoint: BlobRef,
    pub policy: P,
}

/// The loaded policies, keyed by player (current versions) and member id (population).
#[derive(Debug)]
pub struct Policies<P = Policy> {
    current: PerPlayer<Option<Loaded<P>>>,
    members: BTreeMap<String, Loaded<P>>,
}

impl<P> Default for Policies<P> {
    fn default() -> Self {
        Self {
            current: PerPlayer::new(None, None),
            members: BTreeMap::new(),
        }
    }
}

impl<P> Policies<P> {
    /// The loaded current policy of `player`.
    pub fn current(&self, player: Player) -> Option<&Loaded<P>> {
        self.current[player].as_ref()
    }

    /// The version of `player` loaded now (0: none).
    pub fn version(&self, player: Player) -> u64 {
        self.current(player).map_or(0, |l| l.version)
    }

    /// Whether `announced` (a published version) differs from what is loaded: `Some` with
    /// its checkpoint when it must be loaded. Version 0 (nothing published) never is.
    pub fn stale<'a>(&self, announced: &'a PolicyVersion) -> Option<&'a BlobRef> {
        let checkpoint = announced.checkpoint.as_ref()?;
        match self.current(announced.player) {
            Some(l) if l.version == announced.version && &l.checkpoint == checkpoint => None,
            _ => Some(checkpoint),
        }
    }

    /// Replaces `player`'s current policy, returning the one it replaces.
    pub fn install(&mut self, player: Player, loaded: Loaded<P>) -> Option<Loaded<P>> {
        self.current[player].replace(loaded)
    }

    /// The population member `id`, if loaded.
    pub fn member(&self, id: &str) -> Option<&Loaded<P>> {
        self.members.get(id)
    }

    /// Members of `assigned` not loaded yet, each once, in first-assigned order.
    pub fn missing_members<'a>(&self, assigned: &'a [Member]) -> Vec<&'a Member> {
        let mut seen = BTreeSet::new();
        assigned
            .iter()
            .filter(|m| !self.members.contains_key(&m.id) && seen.insert(m.id.as_str()))
            .collect()
    }

    pub fn insert_member(&mut self, id: String, loaded: Loaded<P>) {
        self.members.insert(id, loaded);
    }

    /// Drops the members not in `assigned` (they are no longer needed; a later assignment
    /// loads them again from the checkpoint cache). Returns the evicted ids.
    pub fn retain_members(&mut self, assigned: &[Member]) -> Vec<String> {
        let keep: BTreeSet<&str> = assigned.iter().map(|m| m.id.as_str()).collect();
        let evicted: Vec<String> = self
            .members
            .keys()
            .filter(|id| !keep.contains(id.as_str()))
            .cloned()
            .collect();
        for id in &evicted {
            self.members.remove(id);
        }
        evicted
    }

    /// The checkpoints of everything loaded (current policies and members).
    pub fn checkpoints(&self) -> Vec<&BlobRef> {
        self.current
            .agent
            .iter()
            .chain(self.current.attacker.iter())
            .chain(self.members.values())
            .map(|l| &l.checkpoint)
            .collect()
    }

    /// Ids of the loaded members.
    pub fn member_ids(&self) -> Vec<&str> {
        self.members.keys().map(String::as_str).collect()
    }
}

impl crate::round::RoundPolicies for Policies<Policy> {
    fn current(&self, player: Player) -> Option<(&Policy, u64)> {
        Policies::current(self, player).map(|l| (&l.policy, l.version))
    }

    fn member(&self, id: &str) -> Option<(&Policy, u64)> {
        Policies::member(self, id).map(|l| (&l.policy, l.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arlas_core::BlobId;

    fn blob(c: char) -> BlobRef {
        BlobRef {
            id: BlobId::parse(&c.to_string().repeat(64)).unwrap(),
            size: 10,
        }
    }

    fn member(id: &str, c: char) -> Member {
        Member {
            id: id.to_string(),
            iteration: 0,
            attacker_version: 1,
            checkpoint: blob(c),
        }
    }

    #[test]
    fn a_new_version_is_stale_until_installed() {
        let mut p: Policies<&str> = Policies::default();
        let none = PolicyVersion::initial(Player::Agent);
        assert!(
            p.stale(&none).is_none(),
            "nothing published, nothing to load"
        );
        let v1 = PolicyVersion {
            player: Player::Agent,
            version: 1,
            checkpoint: Some(blob('a')),
        };
        assert_eq!(p.stale(&v1), Some(&blob('a')));
        p.install(
            Player::Agent,
            Loaded {
                version: 1,
                checkpoint: blob('a'),
                policy: "agent-1",
            },
        );
        assert!(p.stale(&v1).is_none());
        assert_eq!(
            (p.version(Player::Agent), p.version(Player::Attacker)),
            (1, 0)
        );
        let v2 = PolicyVersion {
            version: 2,
            checkpoint: Some(blob('b')),
            ..v1
        };
        assert_eq!(p.stale(&v2), Some(&blob('b')));
        let old = p.install(
            Player::Agent,
            Loaded {
                version: 2,
                checkpoint: blob('b'),
                policy: "agent-2",
            },
        );
        assert_eq!(old.unwrap().policy, "agent-1");
    }

    #[test]
    fn members_load_once_and_unassigned_ones_are_evicted() {
        let mut p: Policies<u32> = Policies::default();
        let assigned = [member("m0", 'a'), member("m1", 'b'), member("m0", 'a')];
        let missing: Vec<&str> = p
            .missing_members(&assigned)
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(missing, ["m0", "m1"]);
        for (i, m) in ["m0", "m1"].iter().enumerate() {
            p.insert_member(
                m.to_string(),
                Loaded {
                    version: 1,
                    checkpoint: blob('a'),
                    policy: u32::try_from(i).unwrap(),
                },
            );
        }
        assert!(p.missing_members(&assigned).is_empty());
        let evicted = p.retain_members(&[member("m1", 'b'), member("m2", 'c')]);
        assert_eq!(evicted, ["m0"]);
        assert_eq!(p.member_ids(), ["m1"]);
        assert_eq!(p.member("m1").unwrap().policy, 1);
    }
}
