//! The population: an on-disk registry of immutable attacker checkpoints.
//!
//! ```text
//! population/
//!   population.json        the registry: members in the order they joined
//!   attacker-0000/         one checkpoint directory per member, never rewritten
//!   attacker-0001/
//!   .staging-attacker-0002 a checkpoint being written; it joins on `commit`
//! ```
//!
//! A member is written into its staging directory first, then renamed into place and
//! recorded in `population.json` (written to a temporary file and renamed), so a crash at
//! any point leaves either the old population or the new one, never a half-member.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use arlas_core::{ContentHash, hash_dir, hash_weights};

use crate::error::{Error, Result, io};

const REGISTRY: &str = "population.json";

/// One frozen attacker checkpoint in the population.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopulationMember {
    /// Stable name, also the directory name, e.g. `attacker-0003`.
    pub id: String,
    /// The ARLAS iteration that produced it (0 = the imitation warm-up).
    pub iteration: u32,
    /// The attacker policy version it froze.
    pub attacker_version: u64,
    /// Content hash of its checkpoint directory, checked when the population is opened.
    pub content_hash: ContentHash,
    /// Content hash of its weights alone (see [`hash_weights`]): a checkpoint whose weights
    /// a member already has does not join. Absent in registries written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_hash: Option<ContentHash>,
}

/// What committing a staged checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// It joined as a new member.
    Added(PopulationMember),
    /// A member already has its weights: it did not join (the staging directory is removed).
    Unchanged { same_as: String },
}

impl Joined {
    /// The member that holds these weights: the new one, or the one that already did.
    pub fn id(&self) -> &str {
        match self {
            Joined::Added(m) => &m.id,
            Joined::Unchanged { same_as } => same_as,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    members: Vec<PopulationMember>,
}

/// The population directory and its registry.
#[derive(Debug)]
pub struct Population {
    dir: PathBuf,
    members: Vec<PopulationMember>,
}

impl Population {
    /// Opens (or creates) the population in `dir` and verifies every member's checkpoint
    /// against its recorded content hash. Leftover staging directories from a crash are removed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let registry_path = dir.join(REGISTRY);
        let registry = match fs::read(&registry_path) {
            Ok(bytes) => {
                serde_json::from_slice::<Registry>(&bytes).map_err(|source| Error::Registry {
                    path: registry_path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registry::default(),
            Err(e) => return Err(io(&registry_path)(e)),
        };
        let population = Self {
            dir,
            members: registry.members,
        };
        population.remove_staging()?;
        population.verify()?;
        Ok(population)
    }

    /// The population directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Members in the order they joined.
    pub fn members(&self) -> &[PopulationMember] {
        &self.members
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The most recent member.
    pub fn latest(&self) -> Option<&PopulationMember> {
        self.members.last()
    }

    /// The member called `id`.
    pub fn get(&self, id: &str) -> Result<&PopulationMember> {
        self.members
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| Error::UnknownMember(id.to_string()))
    }

    /// The checkpoint directory of member `id`.
    pub fn checkpoint_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        self.get(id)?;
        Ok(self.dir.join(id))
    }

    /// The id the next member gets: `attacker-NNNN`.
    pub fn next_id(&self) -> String {
        format!("attacker-{:04}", self.members.len())
    }

    /// A fresh, empty staging directory for member `id`: write the checkpoint there, then
    /// call [`Population::commit`].
    pub fn staging_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        if self.members.iter().any(|m| m.id == id) {
            return Err(Error::DuplicateMember(id.to_string()));
        }
        let staging = self.dir.join(format!(".staging-{id}"));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        Ok(staging)
    }

    /// Moves the staged checkpoint of `id` into the population, hashes it and records it,
    /// unless a member already has its weights: then the population stays as it is, so
    /// that it only grows when the attacker changed (and opponent sampling and the payoff
    /// matrix count distinct attackers).
    pub fn commit(&mut self, id: &str, iteration: u32, attacker_version: u64) -> Result<Joined> {
        validate_id(id)?;
        if self.members.iter().any(|m| m.id == id) {
            return Err(Error::DuplicateMember(id.to_string()));
        }
        let staging = self.dir.join(format!(".staging-{id}"));
        let weights_hash = hash_weights(&staging)?;
        if let Some(same) = self
            .members
            .iter()
            .find(|m| m.weights_hash.as_ref() == Some(&weights_hash))
        {
            let same_as = same.id.clone();
            fs::remove_dir_all(&staging).map_err(io(&staging))?;
            return Ok(Joined::Unchanged { same_as });
        }
        let target = self.dir.join(id);
        if target.exists() {
            // A crash between rename and registry write left an unregistered directory.
            fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        fs::rename(&staging, &target).map_err(io(&staging))?;
        let content_hash = hash_dir(&target)?;
        let member = PopulationMember {
            id: id.to_string(),
            iteration,
            attacker_version,
            content_hash,
            weights_hash: Some(weights_hash),
        };
        self.members.push(member.clone());
        self.write_registry()?;
        Ok(Joined::Added(member))
    }

    /// Removes the members that joined after `iteration`: recovery for a run that crashed
    /// after a member joined but before the iteration that produced it was committed.
    /// Returns the removed ids. This is the only way a member ever leaves.
    pub fn rollback_after(&mut self, iteration: u32) -> Result<Vec<String>> {
        let (keep, drop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.members)
            .into_iter()
            .partition(|m| m.iteration <= iteration);
        self.members = keep;
        self.write_registry()?;
        let mut removed = Vec::with_capacity(drop.len());
        for member in drop {
            let path = self.dir.join(&member.id);
            if path.exists() {
                fs::remove_dir_all(&path).map_err(io(&path))?;
            }
            tracing::warn!(id = %member.id, iteration = member.iteration, "rolled back an uncommitted population member");
            removed.push(member.id);
        }
        Ok(removed)
    }

    /// Checks every member's directory against its recorded hash.
    pub fn verify(&self) -> Result<()> {
        for member in &self.members {
            let path = self.dir.join(&member.id);
            let found = hash_dir(&path)?;
            if found != member.content_hash {
                return Err(Error::HashMismatch {
                    id: member.id.clone(),
                    path,
                    expected: member.content_hash.0.clone(),
                    found: found.0,
                });
            }
        }
        Ok(())
    }

    fn write_registry(&self) -> Result<()> {
        let registry = Registry {
            members: self.members.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&registry).map_err(|source| Error::Registry {
            path: self.dir.join(REGISTRY),
            source,
        })?;
        write_atomic(&self.dir.join(REGISTRY), &bytes)
    }

    fn remove_staging(&self) -> Result<()> {
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            if entry.file_name().to_string_lossy().starts_with(".staging-") {
                let path = entry.path();
                tracing::warn!(path = %path.display(), "removing an unfinished population member left by a crash");
                fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` through a temporary file: write, fsync, rename, then fsync the
/// directory so that the rename survives a power loss.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    // The rename is durable only once the directory holding it is.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))
}

/// Member ids name directories: no separators, no leading dot, a short safe alphabet.
fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(pop: &Population, id: &str, bytes: &[u8]) {
        let dir = pop.staging_dir(id).unwrap();
        fs::write(dir.join("model.safetensors"), bytes).unwrap();
        fs::write(dir.join("config.json"), b"{}").unwrap();
    }

    #[test]
    fn members_persist_across_reopen_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut pop = Population::open(tmp.path()).unwrap();
        assert!(pop.is_empty());
        for i in 0..3u32 {
            let id = pop.next_id();
            stage(&pop, &id, format!("w{i}").as_bytes());
            pop.commit(&id, i, u64::from(i) + 1).unwrap();
        }
        let reopened = Population::open(tmp.path()).unwrap();
        let ids: Vec<_> = reopened.members().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["attacker-0000", "attacker-0001", "attacker-0002"]);
        assert_eq!(reopened.latest().unwrap().attacker_version, 3);
        assert!(
            reopened
                .checkpoint_dir("attacker-0001")
                .unwrap()
                .join("config.json")
                .is_file()
        );
    }

    /// An attacker that did not change (same weights, another version and manifest) does
    /// not join; a changed one does, and a registry reopened still knows the weights.
    #[test]
    fn the_population_grows_only_with_change() {
        let tmp = tempfile::tempdir().unwrap();
        let mut pop = Population::open(tmp.path()).unwrap();
        stage(&pop, "attacker-0000", b"w0");
        assert!(matches!(
            pop.commit("attacker-0000", 0, 1).unwrap(),
            Joined::Added(_)
        ));
        let mut pop = Population::open(tmp.path()).unwrap();
        let id = pop.next_id();
        stage(&pop, &id, b"w0");
        fs::write(
            tmp.path().join(format!(".staging-{id}/manifest.json")),
            b"v2",
        )
        .unwrap();
        let joined = pop.commit(&id, 1, 2).unwrap();
        assert_eq!(
            joined,
            Joined::Unchanged {
                same_as: "attacker-0000".into()
            }
        );
        assert_eq!(joined.id(), "attacker-0000");
        assert_eq!(pop.len(), 1);
        assert!(!tmp.path().join(format!(".staging-{id}")).exists());
        stage(&pop, &id, b"w1");
        assert!(matches!(pop.commit(&id, 2, 3).unwrap(), Joined::Added(_)));
        assert_eq!(Population::open(tmp.path()).unwrap().len(), 2);
    }

    #[test]
    fn rollback_removes_only_later_members() {
        let tmp = tempfile::tempdir().unwrap();
        let mut pop = Population::open(tmp.path()).unwrap();
        for i in 0..3u32 {
            let id = pop.next_id();
            stage(&pop, &id, format!("w{i}").as_bytes());
            pop.commit(&id, i, u64::from(i)).unwrap();
        }
        assert_eq!(pop.rollback_after(1).unwrap(), ["attacker-0002"]);
        let pop = Population::open(tmp.path()).unwrap();
        assert_eq!(pop.len(), 2);
        assert!(!tmp.path().join("attacker-0002").exists());
        assert_eq!(pop.next_id(), "attacker-0002");
    }

    #[test]
    fn truncated_member_is_detected_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let mut pop = Population::open(tmp.path()).unwrap();
        stage(&pop, "attacker-0000", b"weights-weights");
        pop.commit("attacker-0000", 0, 1).unwrap();
        let file = tmp.path().join("attacker-0000/model.safetensors");
        fs::write(&file, b"weights").unwrap();
        let err = Population::open(tmp.path()).unwrap_err();
        assert!(
            matches!(err, Error::HashMismatch { ref id, .. } if id == "attacker-0000"),
            "{err}"
        );
    }

    #[test]
    fn ids_cannot_escape_the_directory_and_members_are_immutable() {
        let tmp = tempfile::tempdir().unwrap();
        let mut pop = Population::open(tmp.path()).unwrap();
        for bad in ["../evil", "a/b", ".hidden", "", "x y"] {
            assert!(
                matches!(pop.staging_dir(bad), Err(Error::InvalidId(_))),
                "{bad:?}"
            );
        }
        stage(&pop, "attacker-0000", b"w");
        pop.commit("attacker-0000", 0, 1).unwrap();
        assert!(matches!(
            pop.staging_dir("attacker-0000"),
            Err(Error::DuplicateMember(_))
        ));
        assert!(matches!(
            pop.checkpoint_dir("attacker-0009"),
            Err(Error::UnknownMember(_))
        ));
    }

    #[test]
    fn unfinished_staging_is_cleaned_and_not_a_member() {
        let tmp = tempfile::tempdir().unwrap();
        let pop = Population::open(tmp.path()).unwrap();
        stage(&pop, "attacker-0000", b"half");
        drop(pop);
        let pop = Population::open(tmp.path()).unwrap();
        assert!(pop.is_empty());
        assert!(!tmp.path().join(".staging-attacker-0000").exists());
    }
}
