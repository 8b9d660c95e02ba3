//! The coordinator's state machine: registry with leases, the run's versions, the
//! population and its blobs, the payoff matrix. Plain synchronous code with time passed
//! in; one owner ([`super::owner`]) runs it, so nothing here is shared or locked.
//!
//! Data directory:
//!
//! ```text
//! DATA/
//!   run.json       versions, held versions, member -> blob map (the commit point)
//!   payoff.json    the payoff matrix
//!   blobs/         content-addressed checkpoint blobs (see `blobs`)
//!   population/    the attacker population, unpacked (see `crate::population`)
//! ```

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::archive;
use super::blobs::{BlobStore, BlobWriter, StagedBlob};
use super::config::CoordinatorConfig;
use super::ids::{BlobId, LeaseId};
use super::leases::Leases;
use super::run_state::RunRecord;
use super::types::{
    BlobRef, MatchResult, Member, Player, PolicyVersion, PublishHeader, Published, Registration,
    Role, RunView,
};
use crate::error::{Error, Result, io};
use crate::opponents::sample_opponents;
use crate::payoff::{PayoffMatrix, Tally};
use crate::population::{Population, write_atomic};

const RUN_FILE: &str = "run.json";
const PAYOFF_FILE: &str = "payoff.json";

/// Whether a publish still needs its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishCheck {
    /// Send the bytes; `have_blob`: the store already holds them, so chunks may be omitted.
    Upload { have_blob: bool },
    /// This exact version was already published: nothing to do (a retried publish).
    Done(Published),
}

/// The coordinator's whole state.
#[derive(Debug)]
pub struct CoordinatorState {
    config: CoordinatorConfig,
    dir: PathBuf,
    blobs: BlobStore,
    population: Population,
    payoff: PayoffMatrix,
    record: RunRecord,
    leases: Leases,
    rng: ChaCha8Rng,
    /// Changes since this start (the low 32 bits of the revision).
    changes: u32,
}

impl CoordinatorState {
    /// Opens (or creates) the data directory and verifies everything in it: every blob by
    /// size and sha256, every population member by content hash, and that `run.json` names
    /// only blobs that exist. Fails with the offending file named rather than serve a run
    /// it cannot vouch for.
    pub fn open(dir: impl Into<PathBuf>, config: CoordinatorConfig) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let blobs = BlobStore::open(dir.join("blobs"))?;
        let population = Population::open(dir.join("population"))?;
        let mut record = RunRecord::load(&dir.join(RUN_FILE))?;
        let payoff = load_payoff(&dir.join(PAYOFF_FILE))?;

        // Every blob on disk: complete and matching its name.
        let expected_size = |id: &BlobId| {
            record
                .referenced_blobs()
                .find(|b| &b.id == id)
                .map(|b| b.size)
        };
        let on_disk = blobs.list()?;
        for id in &on_disk {
            blobs.verify(id, expected_size(id))?;
        }
        // Every blob the record names: present.
        for blob in record.referenced_blobs() {
            if !on_disk.contains(&blob.id) {
                return Err(Error::Inconsistent(format!(
                    "{RUN_FILE} names checkpoint blob {} which is missing from blobs/",
                    blob.id
                )));
            }
        }
        reconcile_members(&blobs, &population, &mut record)?;
        // Blobs nobody names were never visible (a publish that crashed before its commit
        // point): drop them.
        let named: HashSet<BlobId> = record.referenced_blobs().map(|b| b.id.clone()).collect();
        for id in on_disk.iter().filter(|id| !named.contains(*id)) {
            tracing::warn!(blob = %id, "removing a checkpoint blob no version names (unfinished publish)");
            blobs.remove(id)?;
        }
        record.epoch = record.epoch.saturating_add(1);
        record.save(&dir.join(RUN_FILE))?;
        let rng = match config.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        tracing::info!(
            dir = %dir.display(),
            agent_version = record.agent.version,
            attacker_version = record.attacker.version,
            population = population.len(),
            blobs = named.len(),
            "coordinator state verified and loaded"
        );
        Ok(Self {
            leases: Leases::new(config.lease_ttl),
            config,
            dir,
            blobs,
            population,
            payoff,
            record,
            rng,
            changes: 0,
        })
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Increases with every visible change, also across restarts.
    pub fn revision(&self) -> u64 {
        (u64::from(self.record.epoch) << 32) | u64::from(self.changes)
    }

    fn changed(&mut self) {
        self.changes = self.changes.wrapping_add(1);
    }

    /// The run as participants see it.
    pub fn view(&self) -> RunView {
        RunView {
            revision: self.revision(),
            agent: self.record.agent.clone(),
            attacker: self.record.attacker.clone(),
            population_size: self.population.len() as u64,
            latest_member: self
                .population
                .latest()
                .and_then(|m| self.member_view(&m.id)),
            learners: self.leases.learners(),
            connected_actors: self.leases.count(Role::Actor) as u64,
        }
    }

    /// Live leases of `role`.
    pub fn connected(&self, role: Role) -> usize {
        self.leases.count(role)
    }

    pub fn lease_ttl(&self) -> Duration {
        self.leases.ttl()
    }

    pub fn register(&mut self, registration: Registration, now: Instant) -> LeaseId {
        self.leases.expire(now);
        let role = registration.role();
        let id = self.leases.register(registration, now);
        tracing::info!(lease = %id, role = role.name(), "registered");
        self.changed();
        id
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

    /// Every population member in joining order.
    pub fn population(&self) -> Vec<Member> {
        self.population
            .members()
            .iter()
            .filter_map(|m| self.member_view(&m.id))
            .collect()
    }

    fn member_view(&self, id: &str) -> Option<Member> {
        let member = self.population.get(id).ok()?;
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
        let members = self.population();
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let version = if agent_version == 0 {
            self.record.agent.version
        } else {
            agent_version
        };
        let picks = sample_opponents(
            &ids,
            &self.payoff,
            version,
            self.config.opponent_pool,
            self.config.opponent_sampling,
            count,
            &mut self.rng,
        );
        Ok(picks.into_iter().map(|i| members[i].clone()).collect())
    }

    /// Adds results to the payoff matrix and saves it.
    pub fn report_results(
        &mut self,
        lease: &LeaseId,
        results: &[MatchResult],
        now: Instant,
    ) -> Result<()> {
        self.leases.role(lease, now)?;
        for r in results {
            self.payoff.add(
                r.agent_version,
                &r.attacker_id,
                Tally {
                    games: r.games,
                    attacker_wins: r.attacker_wins,
                },
            );
        }
        save_payoff(&self.dir.join(PAYOFF_FILE), &self.payoff)
    }

    /// Decides whether `header` can be published and whether its bytes are still needed.
    pub fn check_publish(&self, header: &PublishHeader, now: Instant) -> Result<PublishCheck> {
        self.leases.require(&header.lease, Role::Learner, now)?;
        if header.checkpoint.size > self.config.max_checkpoint_bytes {
            return Err(Error::invalid(
                "size_bytes",
                format!(
                    "checkpoint of {} bytes exceeds the coordinator's limit of {} bytes (max_checkpoint_bytes)",
                    header.checkpoint.size, self.config.max_checkpoint_bytes
                ),
            ));
        }
        let player = header.player;
        let current = self.record.current(player);
        if header.version <= current.version {
            return match self.record.find(player, header.version) {
                Some(held) if held.checkpoint.as_ref() == Some(&header.checkpoint) => {
                    let member = self
                        .record
                        .members
                        .iter()
                        .find(|(_, blob)| **blob == header.checkpoint)
                        .and_then(|(id, _)| self.member_view(id))
                        .filter(|_| header.join_population);
                    Ok(PublishCheck::Done(Published {
                        version: held.clone(),
                        member,
                    }))
                }
                Some(held) => Err(Error::VersionConflict {
                    player: player.name(),
                    version: header.version,
                    existing: held
                        .checkpoint
                        .as_ref()
                        .map_or_else(String::new, |b| b.id.to_string()),
                    offered: header.checkpoint.id.to_string(),
                }),
                None => Err(Error::StaleVersion {
                    player: player.name(),
                    version: header.version,
                    current: current.version,
                }),
            };
        }
        Ok(PublishCheck::Upload {
            have_blob: self.blobs.contains(&header.checkpoint.id),
        })
    }

    /// A writer for the bytes of an upload.
    pub fn upload_writer(&self) -> Result<BlobWriter> {
        self.blobs.writer()
    }

    /// Makes a checked upload visible: the blob is verified against the header and moved
    /// into the store, an attacker joining the population is unpacked and committed there,
    /// then `run.json` records the new version (the commit point). `staged` is `None` when
    /// no bytes were sent because the store already holds the blob.
    pub fn publish(
        &mut self,
        header: &PublishHeader,
        staged: Option<StagedBlob>,
        now: Instant,
    ) -> Result<Published> {
        if let PublishCheck::Done(done) = self.check_publish(header, now)? {
            return Ok(done);
        }
        let blob_path = match &staged {
            Some(staged) => {
                if staged.blob() != &header.checkpoint {
                    return Err(Error::UploadMismatch {
                        expected: header.checkpoint.id.to_string(),
                        expected_size: header.checkpoint.size,
                        found: staged.blob().id.to_string(),
                        found_size: staged.blob().size,
                    });
                }
                staged.path().to_path_buf()
            }
            None => {
                let held = self.blobs.get(&header.checkpoint.id).map_err(|_| {
                    Error::invalid(
                        "chunk",
                        format!(
                            "no bytes were sent and the coordinator holds no blob {}: send the checkpoint's chunks",
                            header.checkpoint.id
                        ),
                    )
                })?;
                if held.size != header.checkpoint.size {
                    return Err(Error::invalid(
                        "size_bytes",
                        format!(
                            "blob {} has {} bytes, not {}",
                            held.id, held.size, header.checkpoint.size
                        ),
                    ));
                }
                self.blobs.path(&header.checkpoint.id)
            }
        };
        // Only well-formed checkpoint archives are accepted; a population member is
        // unpacked into its staging directory in the same pass.
        let member_id = if header.join_population {
            let id = self.population.next_id();
            let staging = self.population.staging_dir(&id)?;
            archive::unpack(&blob_path, &staging)?;
            Some(id)
        } else {
            archive::validate(&blob_path)?;
            None
        };
        if let Some(staged) = staged {
            self.blobs.commit(staged, &header.checkpoint)?;
        }
        if let Some(id) = &member_id {
            self.population
                .commit(id, header.iteration, header.version)?;
            self.record
                .members
                .insert(id.clone(), header.checkpoint.clone());
        }
        let version = PolicyVersion {
            player: header.player,
            version: header.version,
            checkpoint: Some(header.checkpoint.clone()),
        };
        *self.record.current_mut(header.player) = version.clone();
        self.record.history.push(version.clone());
        let dropped = self.record.retain_newest(self.config.keep_versions);
        self.record.save(&self.dir.join(RUN_FILE))?;
        self.changed();
        tracing::info!(
            player = header.player.name(),
            version = header.version,
            blob = %header.checkpoint.id,
            bytes = header.checkpoint.size,
            member = member_id.as_deref().unwrap_or(""),
            "checkpoint published"
        );
        self.delete_unreferenced(&dropped)?;
        Ok(Published {
            version,
            member: member_id.and_then(|id| self.member_view(&id)),
        })
    }

    /// Deletes the blobs of `dropped` versions that nothing else names.
    fn delete_unreferenced(&self, dropped: &[PolicyVersion]) -> Result<()> {
        let named: HashSet<&BlobId> = self.record.referenced_blobs().map(|b| &b.id).collect();
        for blob in dropped.iter().filter_map(|v| v.checkpoint.as_ref()) {
            if !named.contains(&blob.id) {
                self.blobs.remove(&blob.id)?;
            }
        }
        Ok(())
    }

    /// Blob `id` and where it lives (immutable while named by the run).
    pub fn blob(&self, id: &BlobId) -> Result<(BlobRef, PathBuf)> {
        let blob = self.blobs.get(id)?;
        Ok((blob, self.blobs.path(id)))
    }

    /// The current version of `player`.
    pub fn current(&self, player: Player) -> &PolicyVersion {
        self.record.current(player)
    }
}

/// Population members committed without their `run.json` entry (a crash between the two)
/// get it back: packing is deterministic, so the member's directory names its blob.
fn reconcile_members(
    blobs: &BlobStore,
    population: &Population,
    record: &mut RunRecord,
) -> Result<()> {
    for member in population.members() {
        if record.members.contains_key(&member.id) {
            continue;
        }
        let dir = population.checkpoint_dir(&member.id)?;
        let blob = archive::blob_ref_of_dir(&dir)?;
        if !blobs.contains(&blob.id) {
            return Err(Error::Inconsistent(format!(
                "population member {} has no checkpoint blob {} in blobs/",
                member.id, blob.id
            )));
        }
        tracing::warn!(member = %member.id, blob = %blob.id, "recovered a population member's blob after a crash");
        if member.attacker_version > record.attacker.version {
            let version = PolicyVersion {
                player: Player::Attacker,
                version: member.attacker_version,
                checkpoint: Some(blob.clone()),
            };
            record.attacker = version.clone();
            record.history.push(version);
        }
        record.members.insert(member.id.clone(), blob);
    }
    let known: HashSet<&str> = population.members().iter().map(|m| m.id.as_str()).collect();
    record.members.retain(|id, _| known.contains(id.as_str()));
    Ok(())
}

fn load_payoff(path: &Path) -> Result<PayoffMatrix> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::RunState {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PayoffMatrix::default()),
        Err(e) => Err(io(path)(e)),
    }
}

fn save_payoff(path: &Path, payoff: &PayoffMatrix) -> Result<()> {
    let bytes = serde_json::to_vec(payoff).map_err(|source| Error::RunState {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::archive::HashingWriter;
    use sha2::Digest;

    /// A checkpoint blob in memory: a small directory packed with `tag` in its weights.
    fn blob(tag: &str) -> (Vec<u8>, BlobRef) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("model.safetensors"),
            format!("weights {tag}"),
        )
        .unwrap();
        fs::write(dir.path().join("config.json"), b"{}").unwrap();
        let mut out = HashingWriter::new(Vec::new());
        archive::pack(dir.path(), &mut out).unwrap();
        out.finish()
    }

    fn stage(state: &CoordinatorState, bytes: &[u8]) -> StagedBlob {
        let mut w = state.upload_writer().unwrap();
        for chunk in bytes.chunks(7) {
            w.write(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn learner(state: &mut CoordinatorState, now: Instant) -> LeaseId {
        state.register(
            Registration::Learner {
                name: "learner".into(),
                url: "http://127.0.0.1:50052".into(),
                players: vec![Player::Agent, Player::Attacker],
            },
            now,
        )
    }

    fn header(lease: &LeaseId, player: Player, version: u64, blob: &BlobRef) -> PublishHeader {
        PublishHeader {
            lease: lease.clone(),
            player,
            version,
            checkpoint: blob.clone(),
            join_population: player == Player::Attacker,
            iteration: u32::try_from(version).unwrap(),
        }
    }

    fn config() -> CoordinatorConfig {
        CoordinatorConfig {
            seed: Some(7),
            ..CoordinatorConfig::default()
        }
    }

    #[test]
    fn publish_verifies_the_hash_before_anything_is_visible_and_versions_only_increase() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
        let now = Instant::now();
        let lease = learner(&mut state, now);
        let (bytes, good) = blob("v1");
        let revision = state.revision();

        // Bytes that do not hash to the header's id are refused; nothing changes.
        let mut tampered = bytes.clone();
        tampered[20] ^= 1;
        let err = state
            .publish(
                &header(&lease, Player::Agent, 1, &good),
                Some(stage(&state, &tampered)),
                now,
            )
            .unwrap_err();
        assert!(matches!(err, Error::UploadMismatch { .. }), "{err}");
        assert_eq!(state.view().agent.version, 0);
        assert_eq!(state.revision(), revision);
        assert!(!state.blobs.contains(&good.id));

        let published = state
            .publish(
                &header(&lease, Player::Agent, 1, &good),
                Some(stage(&state, &bytes)),
                now,
            )
            .unwrap();
        assert_eq!(published.version.version, 1);
        assert_eq!(state.view().agent.checkpoint, Some(good.clone()));
        assert!(state.revision() > revision);

        // A retried publish of the same version and bytes is a no-op; other bytes conflict.
        let h1 = header(&lease, Player::Agent, 1, &good);
        assert!(matches!(
            state.check_publish(&h1, now),
            Ok(PublishCheck::Done(_))
        ));
        let (_, other) = blob("other");
        let err = state
            .check_publish(&header(&lease, Player::Agent, 1, &other), now)
            .unwrap_err();
        assert!(matches!(err, Error::VersionConflict { .. }), "{err}");
        // Going back is refused.
        let (b3, v3) = blob("v3");
        state
            .publish(
                &header(&lease, Player::Agent, 3, &v3),
                Some(stage(&state, &b3)),
                now,
            )
            .unwrap();
        let err = state
            .check_publish(&header(&lease, Player::Agent, 2, &other), now)
            .unwrap_err();
        assert!(
            matches!(err, Error::StaleVersion { current: 3, .. }),
            "{err}"
        );
        assert_eq!(state.current(Player::Agent).version, 3);
        assert_eq!(state.current(Player::Attacker).version, 0);
    }

    #[test]
    fn only_learners_publish_and_only_checkpoint_archives_are_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
        let now = Instant::now();
        let actor = state.register(Registration::Actor { name: "a".into() }, now);
        let (_, good) = blob("x");
        let err = state
            .check_publish(&header(&actor, Player::Agent, 1, &good), now)
            .unwrap_err();
        assert!(matches!(err, Error::WrongRole { .. }), "{err}");

        let lease = learner(&mut state, now);
        let junk = b"not a checkpoint archive".to_vec();
        let junk_ref = BlobRef {
            id: BlobId::from_digest(&sha2::Sha256::digest(&junk)),
            size: junk.len() as u64,
        };
        let err = state
            .publish(
                &header(&lease, Player::Attacker, 1, &junk_ref),
                Some(stage(&state, &junk)),
                now,
            )
            .unwrap_err();
        assert!(matches!(err, Error::Archive(_)), "{err}");
        assert!(state.population().is_empty());
        assert_eq!(state.current(Player::Attacker).version, 0);
        // No bytes and no such blob: the publisher must send the chunks.
        let err = state
            .publish(&header(&lease, Player::Agent, 1, &good), None, now)
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid { field: "chunk", .. }),
            "{err}"
        );
    }

    #[test]
    fn population_and_versions_survive_a_restart_and_truncation_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let (members, agent, revision) = {
            let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
            let lease = learner(&mut state, now);
            for v in 1..=2 {
                let (bytes, b) = blob(&format!("attacker {v}"));
                state
                    .publish(
                        &header(&lease, Player::Attacker, v, &b),
                        Some(stage(&state, &bytes)),
                        now,
                    )
                    .unwrap();
            }
            let (bytes, b) = blob("agent 5");
            state
                .publish(
                    &header(&lease, Player::Agent, 5, &b),
                    Some(stage(&state, &bytes)),
                    now,
                )
                .unwrap();
            (state.population(), state.view().agent, state.revision())
        };
        let state = CoordinatorState::open(tmp.path(), config()).unwrap();
        assert_eq!(state.population(), members);
        assert_eq!(members.len(), 2);
        assert_eq!(state.view().agent, agent);
        assert_eq!(state.view().attacker.version, 2);
        assert!(
            state.revision() > revision,
            "revisions keep increasing across restarts"
        );
        drop(state);

        let blob_path = tmp
            .path()
            .join("blobs")
            .join(agent.checkpoint.unwrap().id.as_str());
        let bytes = fs::read(&blob_path).unwrap();
        fs::write(&blob_path, &bytes[..bytes.len() / 2]).unwrap();
        let err = CoordinatorState::open(tmp.path(), config()).unwrap_err();
        assert!(matches!(err, Error::BlobTruncated { .. }), "{err}");
        assert!(
            err.to_string().contains(&blob_path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_member_committed_before_run_json_is_recovered_at_start_up() {
        let tmp = tempfile::tempdir().unwrap();
        let now = Instant::now();
        let member = {
            let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
            let lease = learner(&mut state, now);
            let (bytes, b) = blob("attacker 1");
            state
                .publish(
                    &header(&lease, Player::Attacker, 1, &b),
                    Some(stage(&state, &bytes)),
                    now,
                )
                .unwrap()
                .member
                .unwrap()
        };
        // As if the process died after the population commit, before run.json was written.
        let mut record = RunRecord::load(&tmp.path().join(RUN_FILE)).unwrap();
        record.attacker = PolicyVersion::initial(Player::Attacker);
        record.history.clear();
        record.members.clear();
        record.save(&tmp.path().join(RUN_FILE)).unwrap();

        let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
        assert_eq!(state.population(), std::slice::from_ref(&member));
        assert_eq!(
            state.current(Player::Attacker).checkpoint,
            Some(member.checkpoint.clone())
        );
        // The learner's retry of that publish is now a no-op, not a second member.
        let lease = learner(&mut state, now);
        let h = header(&lease, Player::Attacker, 1, &member.checkpoint);
        assert!(
            matches!(state.check_publish(&h, now), Ok(PublishCheck::Done(p)) if p.member == Some(member))
        );
    }

    #[test]
    fn old_agent_blobs_are_deleted_but_members_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = CoordinatorState::open(
            tmp.path(),
            CoordinatorConfig {
                keep_versions: 2,
                ..config()
            },
        )
        .unwrap();
        let now = Instant::now();
        let lease = learner(&mut state, now);
        let mut refs = Vec::new();
        for v in 1..=3 {
            let (bytes, b) = blob(&format!("agent {v}"));
            state
                .publish(
                    &header(&lease, Player::Agent, v, &b),
                    Some(stage(&state, &bytes)),
                    now,
                )
                .unwrap();
            let (bytes, a) = blob(&format!("attacker {v}"));
            state
                .publish(
                    &header(&lease, Player::Attacker, v, &a),
                    Some(stage(&state, &bytes)),
                    now,
                )
                .unwrap();
            refs.push((b, a));
        }
        assert!(
            !state.blobs.contains(&refs[0].0.id),
            "agent v1 is beyond retention"
        );
        assert!(state.blobs.contains(&refs[1].0.id) && state.blobs.contains(&refs[2].0.id));
        for (_, attacker) in &refs {
            assert!(
                state.blobs.contains(&attacker.id),
                "population members are kept"
            );
        }
        assert!(matches!(
            state.blob(&refs[0].0.id),
            Err(Error::UnknownBlob(_))
        ));
        drop(state);
        CoordinatorState::open(tmp.path(), config()).unwrap();
    }

    #[test]
    fn opponents_come_from_the_population_for_actors_only() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
        let now = Instant::now();
        let actor = state.register(Registration::Actor { name: "a".into() }, now);
        assert!(
            state
                .assign_opponents(&actor, 0, 4, now)
                .unwrap()
                .is_empty()
        );
        let lease = learner(&mut state, now);
        for v in 1..=3 {
            let (bytes, a) = blob(&format!("attacker {v}"));
            state
                .publish(
                    &header(&lease, Player::Attacker, v, &a),
                    Some(stage(&state, &bytes)),
                    now,
                )
                .unwrap();
        }
        let picks = state.assign_opponents(&actor, 0, 50, now).unwrap();
        assert_eq!(picks.len(), 50);
        let members = state.population();
        assert!(picks.iter().all(|p| members.contains(p)));
        assert!(matches!(
            state.assign_opponents(&lease, 0, 1, now),
            Err(Error::WrongRole { .. })
        ));
        state
            .report_results(
                &actor,
                &[MatchResult {
                    agent_version: 0,
                    attacker_id: members[0].id.clone(),
                    games: 4,
                    attacker_wins: 3,
                }],
                now,
            )
            .unwrap();
        drop(state);
        let state = CoordinatorState::open(tmp.path(), config()).unwrap();
        assert_eq!(state.payoff.get(0, &members[0].id).attacker_wins, 3);
    }

    #[test]
    fn expired_leases_change_the_view() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
        let t0 = Instant::now();
        let actor = state.register(Registration::Actor { name: "a".into() }, t0);
        learner(&mut state, t0);
        assert_eq!(state.view().connected_actors, 1);
        assert_eq!(state.view().learners.len(), 1);
        let revision = state.revision();
        state.heartbeat(&actor, t0 + state.lease_ttl() / 2).unwrap();
        state.expire(t0 + state.lease_ttl() + Duration::from_millis(1));
        assert_eq!(state.view().connected_actors, 1, "the renewed actor stays");
        assert!(
            state.view().learners.is_empty(),
            "the silent learner is dropped"
        );
        assert!(state.revision() > revision);
        state.expire(t0 + state.lease_ttl() * 2);
        assert!(matches!(
            state.heartbeat(&actor, t0 + state.lease_ttl() * 2),
            Err(Error::UnknownLease(_))
        ));
    }
}
