//! Opening the data directory: verification of everything in it and recovery from a crash
//! at any point of a publish.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use arlas_core::{BlobId, Player, PolicyVersion, archive};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{CoordinatorState, RUN_FILE};
use crate::error::{Error, Result, io};
use crate::league::{League, Population};
use crate::service::blobs::BlobStore;
use crate::service::config::CoordinatorConfig;
use crate::service::leases::Leases;
use crate::service::record::RunRecord;

impl CoordinatorState {
    /// Opens (or creates) the data directory and verifies everything in it: every blob by
    /// size and sha256, every population member by content hash, and that `run.json` names
    /// only blobs that exist. Fails with the offending file named rather than serve a run
    /// it cannot vouch for.
    pub fn open(dir: impl Into<PathBuf>, config: CoordinatorConfig) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let blobs = BlobStore::open(dir.join("blobs"))?;
        let league = League::open(&dir)?;
        let mut record = RunRecord::load(&dir.join(RUN_FILE))?;

        verify_blobs(&blobs, &record)?;
        reconcile_members(&blobs, league.population(), &mut record)?;
        // Blobs nobody names were never visible (a publish that crashed before its commit
        // point): drop them.
        let named: HashSet<BlobId> = record.referenced_blobs().map(|b| b.id.clone()).collect();
        for id in blobs.list()?.iter().filter(|id| !named.contains(*id)) {
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
            population = league.population().len(),
            blobs = named.len(),
            "coordinator state verified and loaded"
        );
        Ok(Self {
            leases: Leases::new(config.lease_ttl),
            reports: super::RecentIds::new(super::REMEMBERED_REPORTS),
            config,
            dir,
            blobs,
            league,
            record,
            rng,
            changes: 0,
        })
    }
}

/// Every blob on disk is complete and matches its name; every blob the record names is
/// on disk.
fn verify_blobs(blobs: &BlobStore, record: &RunRecord) -> Result<()> {
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
    for blob in record.referenced_blobs() {
        if !on_disk.contains(&blob.id) {
            return Err(Error::Inconsistent(format!(
                "{RUN_FILE} names checkpoint blob {} which is missing from blobs/",
                blob.id
            )));
        }
    }
    Ok(())
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
