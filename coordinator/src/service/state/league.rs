//! The league as participants see it: members with their blobs, opponents for actors,
//! results from them.

use std::time::Instant;

use arlas_core::{LeaseId, MatchResult, Member, Role};

use super::CoordinatorState;
use crate::error::Result;
use crate::league::OpponentRule;

impl CoordinatorState {
    /// Every population member in joining order.
    pub fn population(&self) -> Vec<Member> {
        self.league
            .population()
            .members()
            .iter()
            .filter_map(|m| self.member_view(&m.id))
            .collect()
    }

    pub(super) fn member_view(&self, id: &str) -> Option<Member> {
        let member = self.league.population().get(id).ok()?;
        let checkpoint = self.record.members.get(id)?.clone();
        Some(Member {
            id: member.id.clone(),
            iteration: member.iteration,
            attacker_version: member.attacker_version,
            checkpoint,
        })
    }

    /// `count` opponents for agent-training episodes at `agent_version` (0: the current).
    pub fn assign_opponents(
        &mut self,
        lease: &LeaseId,
        agent_version: u64,
        count: usize,
        now: Instant,
    ) -> Result<Vec<Member>> {
        self.leases.require(lease, Role::Actor, now)?;
        let version = if agent_version == 0 {
            self.record.agent.version
        } else {
            agent_version
        };
        let rule = OpponentRule {
            pool: self.config.opponent_pool,
            sampling: self.config.opponent_sampling,
        };
        let ids: Vec<String> = self
            .league
            .draw_opponents(version, rule, count, &mut self.rng)
            .into_iter()
            .map(|m| m.id.clone())
            .collect();
        Ok(ids.iter().filter_map(|id| self.member_view(id)).collect())
    }

    /// Adds results to the payoff matrix and saves it.
    pub fn report_results(
        &mut self,
        lease: &LeaseId,
        results: &[MatchResult],
        now: Instant,
    ) -> Result<()> {
        self.leases.role(lease, now)?;
        self.league.record(results)
    }
}
