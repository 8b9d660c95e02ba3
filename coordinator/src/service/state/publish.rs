//! Publishing: a learner's new version is checked, its bytes verified, an attacker joining
//! the population is unpacked and committed, and `run.json` records it (the commit point).

use std::collections::HashSet;
use std::time::Instant;

use arlas_core::{BlobId, PolicyVersion, PublishHeader, Published, Role, archive};

use super::{CoordinatorState, RUN_FILE};
use crate::error::{Error, Result};
use crate::league::Joined;
use crate::service::blobs::{BlobWriter, StagedBlob};

/// Whether a publish still needs its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishCheck {
    /// Send the bytes; `have_blob`: the store already holds them, so chunks may be omitted.
    Upload { have_blob: bool },
    /// This exact version was already published: nothing to do (a retried publish).
    Done(Published),
}

impl CoordinatorState {
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
        let member = if header.join_population {
            let member = self.league.stage_member()?;
            archive::unpack(&blob_path, &member.dir)?;
            Some(member)
        } else {
            archive::validate(&blob_path)?;
            None
        };
        // The blob is in the store before the member that names it (recovery relies on it).
        if let Some(staged) = staged {
            self.blobs.commit(staged, &header.checkpoint)?;
        }
        // The new run record is built aside and saved before memory changes (the commit
        // point): a failed save leaves the state as it was.
        let mut record = self.record.clone();
        // A checkpoint whose weights a member already has (an attacker that did not change)
        // does not join: the population grows only with change.
        let member_id = match member {
            Some(member) => {
                match self
                    .league
                    .commit_member(member, header.iteration, header.version)?
                {
                    Joined::Added(m) => {
                        record
                            .members
                            .insert(m.id.clone(), header.checkpoint.clone());
                        Some(m.id)
                    }
                    Joined::Unchanged { same_as } => {
                        tracing::info!(
                            version = header.version,
                            same_as = %same_as,
                            "the published attacker's weights are a member's already: not added"
                        );
                        None
                    }
                }
            }
            None => None,
        };
        let version = PolicyVersion {
            player: header.player,
            version: header.version,
            checkpoint: Some(header.checkpoint.clone()),
        };
        *record.current_mut(header.player) = version.clone();
        record.history.push(version.clone());
        let dropped = record.retain_newest(self.config.keep_versions);
        record.save(&self.dir.join(RUN_FILE))?;
        self.record = record;
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
}
