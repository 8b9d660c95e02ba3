//! The registry of participants: every actor and learner holds a lease that ends `ttl`
//! after its last heartbeat. Time is passed in, so the rules are tested without waiting.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arlas_core::{LearnerInfo, LeaseId, Registration, Role};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct Lease {
    registration: Registration,
    expires: Instant,
}

/// The most live leases of `role`: learners are a handful per run (one or a few per
/// player), actors many.
pub fn max_live(role: Role) -> usize {
    match role {
        Role::Learner => 64,
        Role::Actor => 65_536,
    }
}

/// Live leases by id.
#[derive(Debug)]
pub struct Leases {
    ttl: Duration,
    live: BTreeMap<LeaseId, Lease>,
}

impl Leases {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            live: BTreeMap::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new lease for `registration`, valid until `now + ttl`; refused when its role
    /// already holds [`max_live`] leases (each live learner is listed in every run state
    /// sent, so unbounded registrations would grow it past the message limit).
    pub fn register(&mut self, registration: Registration, now: Instant) -> Result<LeaseId> {
        let role = registration.role();
        let max = max_live(role);
        if self.count(role) >= max {
            return Err(Error::TooManyLeases {
                role: role.name(),
                max,
            });
        }
        let id = LeaseId::random();
        self.live.insert(
            id.clone(),
            Lease {
                registration,
                expires: now + self.ttl,
            },
        );
        Ok(id)
    }

    /// Extends lease `id` to `now + ttl`. An expired lease is gone: register again.
    pub fn renew(&mut self, id: &LeaseId, now: Instant) -> Result<()> {
        self.expire(now);
        let ttl = self.ttl;
        let lease = self
            .live
            .get_mut(id)
            .ok_or_else(|| Error::UnknownLease(id.to_string()))?;
        lease.expires = now + ttl;
        Ok(())
    }

    /// The role of live lease `id`.
    pub fn role(&self, id: &LeaseId, now: Instant) -> Result<Role> {
        match self.live.get(id) {
            Some(lease) if lease.expires > now => Ok(lease.registration.role()),
            _ => Err(Error::UnknownLease(id.to_string())),
        }
    }

    /// Checks that `id` is live and held by `role`.
    pub fn require(&self, id: &LeaseId, role: Role, now: Instant) -> Result<()> {
        let found = self.role(id, now)?;
        if found == role {
            Ok(())
        } else {
            Err(Error::WrongRole {
                lease: id.to_string(),
                role: found.name(),
                needed: role.name(),
            })
        }
    }

    /// Ends lease `id` now. Unknown ids are not an error (the lease may have expired).
    pub fn remove(&mut self, id: &LeaseId) -> bool {
        self.live.remove(id).is_some()
    }

    /// Drops every lease that expired at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.live.len();
        self.live.retain(|id, lease| {
            let keep = lease.expires > now;
            if !keep {
                tracing::info!(lease = %id, role = lease.registration.role().name(), "lease expired");
            }
            keep
        });
        before - self.live.len()
    }

    /// Live leases of `role`.
    pub fn count(&self, role: Role) -> usize {
        self.live
            .values()
            .filter(|l| l.registration.role() == role)
            .count()
    }

    /// Learners with a live lease, in lease-id order.
    pub fn learners(&self) -> Vec<LearnerInfo> {
        self.live
            .iter()
            .filter_map(|(id, lease)| match &lease.registration {
                Registration::Learner { name, url, players } => Some(LearnerInfo {
                    lease: id.clone(),
                    name: name.clone(),
                    url: url.clone(),
                    players: players.clone(),
                }),
                Registration::Actor { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arlas_core::Player;

    fn actor() -> Registration {
        Registration::Actor { name: "a".into() }
    }

    #[test]
    fn leases_expire_after_the_ttl_unless_renewed() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut leases = Leases::new(ttl);
        let a = leases.register(actor(), t0).unwrap();
        let b = leases.register(actor(), t0).unwrap();
        assert_eq!(leases.count(Role::Actor), 2);
        leases.renew(&a, t0 + Duration::from_secs(8)).unwrap();
        // b's lease ends at t0 + 10 s; a's at t0 + 18 s.
        assert_eq!(leases.expire(t0 + Duration::from_secs(11)), 1);
        assert!(matches!(
            leases.renew(&b, t0 + Duration::from_secs(11)),
            Err(Error::UnknownLease(_))
        ));
        assert!(leases.role(&a, t0 + Duration::from_secs(17)).is_ok());
        // Not yet swept, but already dead at t0 + 18 s.
        assert!(leases.role(&a, t0 + Duration::from_secs(18)).is_err());
        assert_eq!(leases.expire(t0 + Duration::from_secs(18)), 1);
        assert_eq!(leases.count(Role::Actor), 0);
    }

    #[test]
    fn roles_are_enforced_and_learners_listed() {
        let t0 = Instant::now();
        let mut leases = Leases::new(Duration::from_secs(5));
        let a = leases.register(actor(), t0).unwrap();
        let l = leases
            .register(
                Registration::Learner {
                    name: "l".into(),
                    url: "http://127.0.0.1:1".into(),
                    players: vec![Player::Agent],
                },
                t0,
            )
            .unwrap();
        assert!(leases.require(&l, Role::Learner, t0).is_ok());
        assert!(matches!(
            leases.require(&a, Role::Learner, t0),
            Err(Error::WrongRole { .. })
        ));
        let learners = leases.learners();
        assert_eq!(learners.len(), 1);
        assert_eq!(learners[0].lease, l);
        assert!(leases.remove(&l));
        assert!(!leases.remove(&l));
        assert!(leases.learners().is_empty());
    }

    #[test]
    fn live_leases_per_role_are_bounded() {
        let t0 = Instant::now();
        let mut leases = Leases::new(Duration::from_secs(5));
        let learner = |n: usize| Registration::Learner {
            name: format!("l{n}"),
            url: "http://127.0.0.1:1".into(),
            players: vec![Player::Agent],
        };
        let max = max_live(Role::Learner);
        let ids: Vec<LeaseId> = (0..max)
            .map(|n| leases.register(learner(n), t0).unwrap())
            .collect();
        assert!(matches!(
            leases.register(learner(max), t0),
            Err(Error::TooManyLeases { max: m, .. }) if m == max
        ));
        // Actors are counted apart, and a freed learner lease can be taken again.
        leases.register(actor(), t0).unwrap();
        assert!(leases.remove(&ids[0]));
        leases.register(learner(max), t0).unwrap();
    }
}
