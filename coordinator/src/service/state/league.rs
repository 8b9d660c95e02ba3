//! The league as participants see it: members with their blobs, opponents for actors,
//! results from them.

use std::time::Instant;

use arlas_core::{LeaseId, MatchResult, Member, Role};

use super::CoordinatorState;
use crate::error::{Error, Result};
use crate::league::OpponentRule;

/// The most games one reported result may count: far more than an actor plays between two
/// reports, far less than what could overflow a tally.
pub const MAX_GAMES_PER_RESULT: u64 = 1 << 24;

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

    /// Adds an actor's results to the payoff matrix and saves it. A batch with a count no
    /// report can hold is refused whole (nothing is recorded); a result naming no population
    /// member or an agent version not yet published (after the coordinator's state was
    /// restored from an older copy, say) is left out with a warning, and the rest recorded.
    /// Returns how many results were left out.
    pub fn report_results(
        &mut self,
        lease: &LeaseId,
        report_id: u64,
        results: &[MatchResult],
        now: Instant,
    ) -> Result<usize> {
        self.leases.require(lease, Role::Actor, now)?;
        if report_id != 0 && self.reports.contains(&report_id) {
            tracing::debug!(
                report_id,
                "a report counted before was sent again; not added"
            );
            return Ok(0);
        }
        if let Some(r) = results.iter().find(|r| r.games > MAX_GAMES_PER_RESULT) {
            return Err(Error::invalid(
                "results.games",
                format!(
                    "{} games in one result; at most {MAX_GAMES_PER_RESULT}",
                    r.games
                ),
            ));
        }
        let current = self.record.agent.version;
        let (known, unknown): (Vec<MatchResult>, Vec<MatchResult>) =
            results.iter().cloned().partition(|r| {
                r.agent_version <= current && self.league.population().get(&r.attacker_id).is_ok()
            });
        if let Some(r) = unknown.first() {
            tracing::warn!(
                left_out = unknown.len(),
                attacker = %r.attacker_id,
                agent_version = r.agent_version,
                current,
                "results for an unknown member or an unpublished agent version were left out"
            );
        }
        self.league.record(&known)?;
        if report_id != 0 {
            self.reports.insert(report_id);
        }
        Ok(unknown.len())
    }
}
