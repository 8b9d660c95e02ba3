//! The coordinator's messages: registrations, versions, members, results and the run view,
//! to validated domain values and back.

use arlas_game::{PerPlayer, Player};
use arlas_proto::v1;

use super::{MAX_NAME_BYTES, MAX_OPPONENTS, MAX_RESULTS, MAX_URL_BYTES};
use crate::error::{Error, Result};
use crate::ids::{BlobId, LeaseId};
use crate::registry::{LearnerInfo, Registration, RunView};
use crate::results::MatchResult;
use crate::version::{BlobRef, Member, PolicyVersion, PublishHeader, Published};

pub fn player_from_wire(field: &'static str, raw: i32) -> Result<Player> {
    match arlas_proto::player(field, raw)? {
        v1::Player::Agent => Ok(Player::Agent),
        v1::Player::Attacker => Ok(Player::Attacker),
        v1::Player::Unspecified => Err(arlas_proto::Error::Missing { field }.into()),
    }
}

pub fn player_to_wire(player: Player) -> v1::Player {
    match player {
        Player::Agent => v1::Player::Agent,
        Player::Attacker => v1::Player::Attacker,
    }
}

pub fn lease_from_wire(text: &str) -> Result<LeaseId> {
    LeaseId::parse(text)
}

pub fn blob_id_from_wire(text: &str) -> Result<BlobId> {
    BlobId::parse(text)
}

fn name_from_wire(name: String) -> Result<String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            "name",
            format!(
                "{} bytes; use 1 to {MAX_NAME_BYTES} bytes (e.g. the pod name)",
                name.len()
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            format!("{name:?} contains control characters"),
        ));
    }
    Ok(name)
}

pub fn registration_from_wire(req: v1::RegisterRequest) -> Result<Registration> {
    let role = arlas_proto::role("role", req.role)?;
    let name = name_from_wire(req.name)?;
    match role {
        v1::Role::Actor => {
            if !req.players.is_empty() || !req.url.is_empty() {
                return Err(Error::invalid(
                    "players",
                    "actors register without players or url",
                ));
            }
            Ok(Registration::Actor { name })
        }
        v1::Role::Learner => {
            let mut players = req
                .players
                .iter()
                .map(|&p| player_from_wire("players", p))
                .collect::<Result<Vec<_>>>()?;
            players.sort();
            players.dedup();
            if players.is_empty() {
                return Err(Error::invalid(
                    "players",
                    "a learner names the players it trains (agent, attacker or both)",
                ));
            }
            let url = req.url;
            if url.len() > MAX_URL_BYTES
                || !(url.starts_with("http://") || url.starts_with("https://"))
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::invalid(
                    "url",
                    format!(
                        "{url:?} is not an http:// or https:// URL of the learner's gRPC service"
                    ),
                ));
            }
            Ok(Registration::Learner { name, url, players })
        }
        v1::Role::Unspecified => Err(arlas_proto::Error::Missing { field: "role" }.into()),
    }
}

pub fn publish_header_from_wire(h: v1::PublishHeader) -> Result<PublishHeader> {
    let player = player_from_wire("header.player", h.player)?;
    if h.version == 0 {
        return Err(Error::invalid(
            "header.version",
            "0 is the initial version and cannot be published; start at 1",
        ));
    }
    if h.join_population && player != Player::Attacker {
        return Err(Error::invalid(
            "header.join_population",
            "only attacker checkpoints join the population",
        ));
    }
    if h.size_bytes == 0 {
        return Err(Error::invalid(
            "header.size_bytes",
            "a checkpoint has at least one byte",
        ));
    }
    Ok(PublishHeader {
        lease: lease_from_wire(&h.lease_id)?,
        player,
        version: h.version,
        checkpoint: BlobRef {
            id: blob_id_from_wire(&h.sha256)?,
            size: h.size_bytes,
        },
        join_population: h.join_population,
        iteration: h.iteration,
    })
}

pub fn opponent_count_from_wire(count: u32) -> Result<usize> {
    if count == 0 || count > MAX_OPPONENTS {
        return Err(Error::invalid(
            "count",
            format!("{count}; ask for 1 to {MAX_OPPONENTS} opponents"),
        ));
    }
    Ok(count as usize)
}

pub fn results_from_wire(results: Vec<v1::MatchResult>) -> Result<Vec<MatchResult>> {
    if results.len() > MAX_RESULTS {
        return Err(Error::invalid(
            "results",
            format!(
                "{} entries; send at most {MAX_RESULTS} per call",
                results.len()
            ),
        ));
    }
    results
        .into_iter()
        .map(|r| {
            if r.attacker_wins > r.games {
                return Err(Error::invalid(
                    "results.attacker_wins",
                    format!("{} wins in {} games", r.attacker_wins, r.games),
                ));
            }
            Ok(MatchResult {
                agent_version: r.agent_version,
                attacker_id: name_from_wire(r.attacker_id)
                    .map_err(|e| Error::invalid("results.attacker_id", e.to_string()))?,
                games: r.games,
                attacker_wins: r.attacker_wins,
            })
        })
        .collect()
}

pub fn blob_to_wire(b: &BlobRef) -> v1::CheckpointRef {
    v1::CheckpointRef {
        sha256: b.id.to_string(),
        size_bytes: b.size,
    }
}

pub fn blob_from_wire(b: &v1::CheckpointRef) -> Result<BlobRef> {
    Ok(BlobRef {
        id: blob_id_from_wire(&b.sha256)?,
        size: b.size_bytes,
    })
}

pub fn version_to_wire(v: &PolicyVersion) -> v1::PolicyVersion {
    v1::PolicyVersion {
        player: player_to_wire(v.player).into(),
        version: v.version,
        checkpoint: v.checkpoint.as_ref().map(blob_to_wire),
    }
}

pub fn version_from_wire(v: &v1::PolicyVersion) -> Result<PolicyVersion> {
    Ok(PolicyVersion {
        player: player_from_wire("player", v.player)?,
        version: v.version,
        checkpoint: v.checkpoint.as_ref().map(blob_from_wire).transpose()?,
    })
}

pub fn member_to_wire(m: &Member) -> v1::PopulationMember {
    v1::PopulationMember {
        id: m.id.clone(),
        iteration: m.iteration,
        attacker_version: m.attacker_version,
        checkpoint: Some(blob_to_wire(&m.checkpoint)),
    }
}

pub fn member_from_wire(m: &v1::PopulationMember) -> Result<Member> {
    let checkpoint = m
        .checkpoint
        .as_ref()
        .ok_or_else(|| Error::invalid("member.checkpoint", "missing"))?;
    Ok(Member {
        id: m.id.clone(),
        iteration: m.iteration,
        attacker_version: m.attacker_version,
        checkpoint: blob_from_wire(checkpoint)?,
    })
}

pub fn run_view_to_wire(v: &RunView) -> v1::RunState {
    v1::RunState {
        revision: v.revision,
        agent: Some(version_to_wire(&v.versions.agent)),
        attacker: Some(version_to_wire(&v.versions.attacker)),
        population_size: v.population_size,
        latest_member: v.latest_member.as_ref().map(member_to_wire),
        learners: v
            .learners
            .iter()
            .map(|l| v1::LearnerEndpoint {
                lease_id: l.lease.to_string(),
                name: l.name.clone(),
                url: l.url.clone(),
                players: l
                    .players
                    .iter()
                    .map(|&p| player_to_wire(p).into())
                    .collect(),
            })
            .collect(),
        connected_actors: v.connected_actors,
    }
}

pub fn run_view_from_wire(s: &v1::RunState) -> Result<RunView> {
    let version = |field: &'static str, v: Option<&v1::PolicyVersion>| {
        v.ok_or_else(|| Error::invalid(field, "missing"))
            .and_then(version_from_wire)
    };
    Ok(RunView {
        revision: s.revision,
        versions: PerPlayer::new(
            version("agent", s.agent.as_ref())?,
            version("attacker", s.attacker.as_ref())?,
        ),
        population_size: s.population_size,
        latest_member: s.latest_member.as_ref().map(member_from_wire).transpose()?,
        learners: s
            .learners
            .iter()
            .map(|l| {
                Ok(LearnerInfo {
                    lease: lease_from_wire(&l.lease_id)?,
                    name: l.name.clone(),
                    url: l.url.clone(),
                    players: l
                        .players
                        .iter()
                        .map(|&p| player_from_wire("players", p))
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?,
        connected_actors: s.connected_actors,
    })
}

pub fn published_to_wire(p: &Published) -> v1::PublishCheckpointResponse {
    v1::PublishCheckpointResponse {
        published: Some(version_to_wire(&p.version)),
        member: p.member.as_ref().map(member_to_wire),
    }
}

pub fn registration_to_wire(registration: &Registration) -> v1::RegisterRequest {
    match registration {
        Registration::Actor { name } => v1::RegisterRequest {
            role: v1::Role::Actor.into(),
            name: name.clone(),
            ..Default::default()
        },
        Registration::Learner { name, url, players } => v1::RegisterRequest {
            role: v1::Role::Learner.into(),
            name: name.clone(),
            url: url.clone(),
            players: players.iter().map(|&p| player_to_wire(p).into()).collect(),
        },
    }
}

pub fn publish_header_to_wire(h: &PublishHeader) -> v1::PublishHeader {
    v1::PublishHeader {
        lease_id: h.lease.to_string(),
        player: player_to_wire(h.player).into(),
        version: h.version,
        sha256: h.checkpoint.id.to_string(),
        size_bytes: h.checkpoint.size,
        join_population: h.join_population,
        iteration: h.iteration,
    }
}

pub fn results_to_wire(results: &[MatchResult]) -> Vec<v1::MatchResult> {
    results
        .iter()
        .map(|r| v1::MatchResult {
            agent_version: r.agent_version,
            attacker_id: r.attacker_id.clone(),
            games: r.games,
            attacker_wins: r.attacker_wins,
        })
        .collect()
}

pub fn published_from_wire(r: &v1::PublishCheckpointResponse) -> Result<Published> {
    let version = r
        .published
        .as_ref()
        .ok_or_else(|| Error::invalid("published", "missing"))?;
    Ok(Published {
        version: version_from_wire(version)?,
        member: r.member.as_ref().map(member_from_wire).transpose()?,
    })
}
