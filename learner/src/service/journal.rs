//! The append-only journal of accepted trajectories: what makes an ACCEPTED ack true.
//!
//! Layout: `journal/<first index, 20 digits>.log` segments. Each segment starts with the
//! magic `ARLASJ1\n`, then records:
//!
//! ```text
//! len: u32 LE          payload length
//! checksum: 8 bytes    the first 8 bytes of the payload's sha256
//! payload              a prost-encoded `arlas.v1.SubmitTrajectoryRequest`
//! ```
//!
//! Records are numbered from 0 across segments (a segment's name is the index of its first
//! record). [`Journal::append`] writes a group of records and fsyncs once (group commit).
//! At start-up [`Journal::open`] reads every segment: a torn tail of the *last* segment
//! (a kill -9 or power cut mid-append: a short header, a short payload, or a bad checksum
//! on the final record) is truncated with a warning; anything wrong earlier is
//! [`Error::JournalCorrupt`] naming the file and byte offset. Segments whose records are
//! all consumed by saved checkpoints are deleted with [`Journal::release_before`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arlas_proto::v1;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, io};

const MAGIC: &[u8; 8] = b"ARLASJ1\n";
const HEADER_BYTES: u64 = 12;
/// Largest record accepted when reading: a gRPC message is at most 8 MiB.
const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;

/// One record read back.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub index: u64,
    pub request: v1::SubmitTrajectoryRequest,
}

/// The journal directory, open for appending.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// (first index, path) of every segment, oldest first; the last one is `current`.
    segments: Vec<(u64, PathBuf)>,
    current: File,
    current_bytes: u64,
    next_index: u64,
    segment_bytes: u64,
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// The bytes of one record for `request`.
pub fn encode_record(request: &v1::SubmitTrajectoryRequest) -> Vec<u8> {
    let payload = request.encode_to_vec();
    let mut out = Vec::with_capacity(payload.len() + 12);
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    out
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// What reading one segment found.
struct Scan {
    records: Vec<JournalRecord>,
    /// Where the valid records end.
    valid_len: u64,
    /// Why the bytes after `valid_len` are not a record (None: the file ends there).
    torn: Option<String>,
}

fn scan(path: &Path, first: u64) -> Result<Scan> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let total = bytes.len() as u64;
    if total < MAGIC.len() as u64 {
        return Ok(Scan {
            records: Vec::new(),
            valid_len: 0,
            torn: Some(format!("{total} bytes, shorter than the segment header")),
        });
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::JournalCorrupt {
            path: path.to_path_buf(),
            offset: 0,
            reason: "not an arlas journal segment (bad magic)".into(),
        });
    }
    let mut offset = MAGIC.len();
    let mut records = Vec::new();
    let corrupt = |offset: usize, reason: String| Error::JournalCorrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    while offset < bytes.len() {
        let start = offset;
        let torn = |reason: String| -> Result<Scan> { Err(corrupt(start, reason)) };
        let rest = bytes.len() - offset;
        if (rest as u64) < HEADER_BYTES {
            return finish_torn(
                records,
                start,
                format!("{rest} bytes, shorter than a header"),
            );
        }
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&bytes[offset..offset + 4]);
        let len = u32::from_le_bytes(len_bytes);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&bytes[offset + 4..offset + 12]);
        let body = offset + 12;
        let end = body as u64 + u64::from(len);
        if len > MAX_RECORD_BYTES || end > total {
            return finish_torn(
                records,
                start,
                format!("a record of {len} bytes runs past the end of the file"),
            );
        }
        let Ok(end) = usize::try_from(end) else {
            return torn(format!("record length {len} does not fit in memory"));
        };
        let payload = &bytes[body..end];
        if checksum(payload) != sum {
            if end == bytes.len() {
                return finish_torn(records, start, "the last record's checksum fails".into());
            }
            return Err(corrupt(start, "checksum mismatch".into()));
        }
        let request = v1::SubmitTrajectoryRequest::decode(payload)
            .map_err(|e| corrupt(start, format!("checksum ok but undecodable: {e}")))?;
        records.push(JournalRecord {
            index: first + records.len() as u64,
            request,
        });
        offset = end;
    }
    Ok(Scan {
        records,
        valid_len: total,
        torn: None,
    })
}

fn finish_torn(records: Vec<JournalRecord>, valid_len: usize, reason: String) -> Result<Scan> {
    Ok(Scan {
        records,
        valid_len: valid_len as u64,
        torn: Some(reason),
    })
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and reads back every record, recovering a
    /// torn tail of the last segment. A new segment starts once one holds `segment_bytes`.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Self, Vec<JournalRecord>)> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log")
                && let Ok(first) = stem.parse::<u64>()
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut records = Vec::new();
        let mut segments = Vec::new();
        let mut expected: Option<u64> = None;
        let mut current_bytes = MAGIC.len() as u64;
        for (k, &first) in firsts.iter().enumerate() {
            let path = segment_path(dir, first);
            if let Some(want) = expected
                && want != first
            {
                return Err(Error::JournalCorrupt {
                    path,
                    offset: 0,
                    reason: format!("segment starts at record {first}, expected {want}"),
                });
            }
            let scan = scan(&path, first)?;
            let last = k + 1 == firsts.len();
            if let Some(reason) = &scan.torn {
                if !last {
                    return Err(Error::JournalCorrupt {
                        path,
                        offset: scan.valid_len,
                        reason: format!("{reason}, in a segment that is not the last"),
                    });
                }
                tracing::warn!(
                    path = %path.display(),
                    offset = scan.valid_len,
                    reason,
                    "journal has a torn tail (interrupted write): truncating it"
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                if scan.valid_len < MAGIC.len() as u64 {
                    file.set_len(0).map_err(io(&path))?;
                    (&file).write_all(MAGIC).map_err(io(&path))?;
                } else {
                    file.set_len(scan.valid_len).map_err(io(&path))?;
                }
                file.sync_all().map_err(io(&path))?;
            }
            current_bytes = scan.valid_len.max(MAGIC.len() as u64);
            expected = Some(first + scan.records.len() as u64);
            records.extend(scan.records);
            segments.push((first, path));
        }
        let next_index = expected.unwrap_or(0);
        let current = match segments.last() {
            Some((_, path)) => {
                let mut f = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(io(path))?;
                f.seek(SeekFrom::End(0)).map_err(io(path))?;
                f
            }
            None => {
                let (file, path) = Self::create_segment(dir, next_index)?;
                segments.push((next_index, path));
                file
            }
        };
        Ok((
            Self {
                dir: dir.to_path_buf(),
                segments,
                current,
                current_bytes,
                next_index,
                segment_bytes: segment_bytes.max(1),
            },
            records,
        ))
    }

    fn create_segment(dir: &Path, first: u64) -> Result<(File, PathBuf)> {
        let path = segment_path(dir, first);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all(MAGIC).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        sync_dir(dir)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok((file, path))
    }

    /// The index the next appended record gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Appends `records` (from [`encode_record`]) and fsyncs once; returns the index of the
    /// first. Nothing is acknowledged before this returns.
    pub fn append(&mut self, records: &[Vec<u8>]) -> Result<u64> {
        let first = self.next_index;
        if records.is_empty() {
            return Ok(first);
        }
        if self.current_bytes >= self.segment_bytes {
            let (file, path) = Self::create_segment(&self.dir, self.next_index)?;
            self.current = file;
            self.segments.push((self.next_index, path));
            self.current_bytes = MAGIC.len() as u64;
        }
        let path = self
            .segments
            .last()
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| self.dir.clone());
        let mut buffer = Vec::with_capacity(records.iter().map(Vec::len).sum());
        for r in records {
            buffer.extend_from_slice(r);
        }
        self.current.write_all(&buffer).map_err(io(&path))?;
        self.current.sync_data().map_err(io(&path))?;
        self.current_bytes += buffer.len() as u64;
        self.next_index += records.len() as u64;
        Ok(first)
    }

    /// Deletes the segments whose records all have an index below `index` (never the one
    /// being appended to).
    pub fn release_before(&mut self, index: u64) -> Result<usize> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1].0 <= index {
            let (_, path) = self.segments.remove(0);
            std::fs::remove_file(&path).map_err(io(&path))?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// How many segment files exist.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn request(seq: u64) -> v1::SubmitTrajectoryRequest {
        v1::SubmitTrajectoryRequest {
            actor_lease_id: "lease-a".into(),
            sequence: seq,
            trajectory: Some(v1::Trajectory {
                group: seq * 7,
                opponent: format!("member-{seq}"),
                ..Default::default()
            }),
        }
    }

    fn append(j: &mut Journal, seqs: std::ops::RangeInclusive<u64>) {
        let records: Vec<Vec<u8>> = seqs.map(|s| encode_record(&request(s))).collect();
        j.append(&records).unwrap();
    }

    #[test]
    fn records_survive_reopen_in_order_across_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, records) = Journal::open(tmp.path(), 200).unwrap();
        assert!(records.is_empty());
        for s in 1..=10 {
            append(&mut j, s..=s);
        }
        assert!(j.segment_count() > 1, "small segments rotate");
        drop(j);
        let (j, records) = Journal::open(tmp.path(), 200).unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.request.sequence).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        let idx: Vec<u64> = records.iter().map(|r| r.index).collect();
        assert_eq!(idx, (0..10).collect::<Vec<_>>());
        assert_eq!(j.next_index(), 10);
        assert_eq!(records[3].request, request(4));
    }

    #[test]
    fn a_torn_tail_is_truncated_and_appending_continues() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(tmp.path(), 1 << 20).unwrap();
        append(&mut j, 1..=3);
        drop(j);
        let path = segment_path(tmp.path(), 0);
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the last record is a torn write: the first two survive.
        let last_len = encode_record(&request(3)).len();
        for cut in 1..last_len {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let (_, records) = Journal::open(tmp.path(), 1 << 20).unwrap();
            assert_eq!(records.len(), 2, "cut {cut}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                full.len() - last_len
            );
        }
        let (mut j, _) = Journal::open(tmp.path(), 1 << 20).unwrap();
        append(&mut j, 4..=4);
        drop(j);
        let (_, records) = Journal::open(tmp.path(), 1 << 20).unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.request.sequence).collect();
        assert_eq!(seqs, vec![1, 2, 4]);
        assert_eq!(records[2].index, 2);
    }

    #[test]
    fn a_corrupt_record_in_the_middle_names_the_file_and_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(tmp.path(), 1 << 20).unwrap();
        append(&mut j, 1..=3);
        drop(j);
        let path = segment_path(tmp.path(), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        let first_len = encode_record(&request(1)).len();
        let second_payload = MAGIC.len() + first_len + 12;
        bytes[second_payload + 2] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = Journal::open(tmp.path(), 1 << 20).unwrap_err();
        match &err {
            Error::JournalCorrupt {
                path: p, offset, ..
            } => {
                assert_eq!(p, &path);
                assert_eq!(*offset as usize, MAGIC.len() + first_len);
            }
            other => panic!("expected JournalCorrupt, got {other}"),
        }
        assert!(
            err.to_string().contains("00000000000000000000.log"),
            "{err}"
        );
    }

    #[test]
    fn released_segments_are_deleted_but_never_the_current_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(tmp.path(), 100).unwrap();
        for s in 1..=6 {
            append(&mut j, s..=s);
        }
        let before = j.segment_count();
        j.release_before(3).unwrap();
        assert!(j.segment_count() < before);
        j.release_before(u64::MAX).unwrap();
        assert_eq!(j.segment_count(), 1);
        drop(j);
        let (j, records) = Journal::open(tmp.path(), 100).unwrap();
        assert!(records.iter().all(|r| r.index >= 3));
        assert_eq!(j.next_index(), 6);
    }
}
