//! Leases: who takes part in the run.

use std::time::{Duration, Instant};

use arlas_core::{LeaseId, Registration, Role};

use super::CoordinatorState;
use crate::error::Result;

impl CoordinatorState {
    /// Live leases of `role`.
    pub fn connected(&self, role: Role) -> usize {
        self.leases.count(role)
    }

    pub fn lease_ttl(&self) -> Duration {
        self.leases.ttl()
    }

    pub fn register(&mut self, registration: Registration, now: Instant) -> Result<LeaseId> {
        self.expire(now);
        let role = registration.role();
        let id = self.leases.register(registration, now)?;
        tracing::info!(lease = %id, role = role.name(), "registered");
        self.changed();
        Ok(id)
    }

    pub fn heartbeat(&mut self, lease: &LeaseId, now: Instant) -> Result<()> {
        self.leases.renew(lease, now)
    }

    pub fn deregister(&mut self, lease: &LeaseId, now: Instant) {
        self.expire(now);
        if self.leases.remove(lease) {
            tracing::info!(%lease, "deregistered");
            self.changed();
        }
    }

    /// Drops expired leases.
    pub fn expire(&mut self, now: Instant) {
        if self.leases.expire(now) > 0 {
            self.changed();
        }
    }
}
