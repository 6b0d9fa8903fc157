//! Resume data: which pieces are on disk, without rehashing everything.
//!
//! Two files per torrent in one resume folder, named by info-hash:
//!
//! - `<hex>.resume`, the checkpoint snapshot ([`snapshot`]): the pieces
//!   that were durable at checkpoint time, plus each file's size and mtime.
//!   Replaced atomically (temp file, fsync, rename, fsync folder).
//! - `<hex>.journal` ([`journal`]): pieces verified since that checkpoint,
//!   appended one record each, never synced.
//!
//! Invariants:
//! - A piece is *trusted* only if it was in the snapshot, its data was
//!   `fdatasync`ed before the snapshot was written, and its files still have
//!   the size and mtime recorded then. A power cut can lose journal records
//!   and unsynced data, never a trusted piece.
//! - Everything else [`ResumeStore::load`] knows about comes back as
//!   `unconfirmed` for the caller to re-hash: journal records (the data may
//!   still have been in the page cache of a killed process) and the
//!   snapshot's pieces in files that changed since. Our own unfinished
//!   writes change a file's mtime too, so after a crash this is the normal
//!   case for files that were being downloaded; re-hashing (not dropping)
//!   them is what keeps "after SIGKILL, re-download at most the pieces in
//!   flight" true.
//!
//! `<hex>.info` caches a magnet's info dictionary so a restart does not
//! need peers to get the metadata again.

mod journal;
mod snapshot;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bt_proto::{Bitfield, InfoHash};
use sha1::{Digest, Sha1};

use crate::error::StoreError;
use crate::layout::Layout;
use crate::storage::Storage;
use journal::JournalFile;
use snapshot::{FileStamp, FormatError, Snapshot};

/// One folder holding the resume data of many torrents.
#[derive(Debug)]
pub struct ResumeStore {
    dir: PathBuf,
}

/// What [`ResumeStore::load`] recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// Pieces that are on disk and durable: no need to hash them.
    pub checkpointed: Bitfield,
    /// Pieces that are probably on disk: re-hash each before trusting it.
    /// Sorted, no duplicates, none of them in `checkpointed`.
    pub unconfirmed: Vec<u32>,
    /// Files whose size or mtime differ from the checkpoint; their
    /// checkpointed pieces were moved to `unconfirmed`. Worth a log line.
    pub changed_files: Vec<usize>,
    /// Files that are gone; their pieces were dropped entirely.
    pub missing_files: Vec<usize>,
    /// The folder the checkpoint was taken in (`Storage::root` then), if
    /// there is a checkpoint.
    pub download_dir: Option<PathBuf>,
}

/// The append side of a torrent's resume data. Not shared: the engine owns
/// one per torrent and calls it from its disk pool. Two journals for the
/// same torrent at once would interleave records and undo each other's
/// checkpoints.
pub struct Journal {
    file: JournalFile,
    snapshot_path: PathBuf,
    info_hash: InfoHash,
    num_pieces: u32,
    /// Every piece in the journal file: recorded since the last checkpoint,
    /// or left over from before a restart and not trusted yet.
    pending: Bitfield,
    /// What the last snapshot written through this journal trusts; `None`
    /// until this process's first checkpoint.
    trusted: Option<Bitfield>,
}

impl ResumeStore {
    /// Opens the resume folder, creating it if needed.
    pub fn open(dir: &Path) -> Result<ResumeStore, StoreError> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io("creating", dir, e))?;
        Ok(ResumeStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, info_hash: &InfoHash, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", info_hash.to_hex()))
    }

    /// Recovers what is known about a torrent's pieces, or `None` if there
    /// is no resume data at all. Files are checked in the folder the
    /// checkpoint was taken in; use [`ResumeStore::load_for`] to check them
    /// where a `Storage` will read them instead.
    ///
    /// A damaged or foreign snapshot is an error
    /// ([`StoreError::ResumeCorrupt`], [`StoreError::ResumeTooNew`]): log it
    /// and fall back to a full [`crate::recheck`].
    pub fn load(
        &self,
        info_hash: &InfoHash,
        layout: &Layout,
    ) -> Result<Option<Resumed>, StoreError> {
        self.load_in(info_hash, layout, None)
    }

    /// [`ResumeStore::load`], checking the files under `storage.root()`.
    /// A download folder that was moved (with `mv`, which keeps mtimes)
    /// therefore keeps its resume data.
    pub fn load_for(
        &self,
        info_hash: &InfoHash,
        storage: &Storage,
    ) -> Result<Option<Resumed>, StoreError> {
        self.load_in(info_hash, storage.layout(), Some(storage.root()))
    }

    fn load_in(
        &self,
        info_hash: &InfoHash,
        layout: &Layout,
        root: Option<&Path>,
    ) -> Result<Option<Resumed>, StoreError> {
        let snapshot_path = self.path(info_hash, "resume");
        let journal_path = self.path(info_hash, "journal");
        let snapshot = match read_optional(&snapshot_path)? {
            Some(bytes) => Some(decode_snapshot(&snapshot_path, &bytes, info_hash, layout)?),
            None => None,
        };
        let journaled = match journal::read(&journal_path)?.as_deref().map(journal::parse) {
            Some(journal::Parsed::Valid {
                num_pieces, pieces, ..
            }) if num_pieces == layout.num_pieces() => Some(pieces),
            Some(journal::Parsed::TooNew(v)) => {
                return Err(StoreError::ResumeTooNew {
                    path: journal_path,
                    version: i64::from(v),
                });
            }
            // A journal for another piece count, or one without a header,
            // holds nothing we can use.
            _ => None,
        };
        if snapshot.is_none() && journaled.is_none() {
            return Ok(None);
        }

        let n = layout.num_pieces();
        let download_dir = snapshot.as_ref().map(|s| s.download_dir.clone());
        let root = root.map(Path::to_path_buf).or_else(|| download_dir.clone());
        let mut checkpointed = snapshot
            .as_ref()
            .map_or_else(|| Bitfield::new(n), |s| s.have.clone());
        let mut unconfirmed: BTreeSet<u32> = journaled.into_iter().flatten().collect();
        let mut changed_files = Vec::new();
        let mut missing_files = Vec::new();
        if let Some(root) = root {
            for (i, spec) in layout.files().iter().enumerate() {
                if spec.padding || spec.length == 0 {
                    continue;
                }
                let now = stamp(&root.join(&spec.path))?;
                let then = snapshot.as_ref().map(|s| s.files[i]);
                if now == FileStamp::Missing {
                    // Nothing of this file can be read: its pieces are
                    // neither trusted nor worth re-hashing.
                    missing_files.push(i);
                    for p in layout.file_pieces(i) {
                        checkpointed.clear(p);
                        unconfirmed.remove(&p);
                    }
                } else if then.is_some_and(|then| then != now) {
                    changed_files.push(i);
                    // A piece already dropped for a missing neighbour
                    // file is not cleared again, so it is not re-added.
                    for p in layout.file_pieces(i) {
                        if checkpointed.clear(p) {
                            unconfirmed.insert(p);
                        }
                    }
                }
            }
        }
        let unconfirmed = unconfirmed
            .into_iter()
            .filter(|&p| !checkpointed.get(p))
            .collect();
        Ok(Some(Resumed {
            checkpointed,
            unconfirmed,
            changed_files,
            missing_files,
            download_dir,
        }))
    }

    /// Opens the torrent's journal for appending, keeping the valid records
    /// already in it (they stay unconfirmed until a checkpoint trusts them).
    pub fn journal(&self, info_hash: &InfoHash, num_pieces: u32) -> Result<Journal, StoreError> {
        let (file, old) = JournalFile::open(&self.path(info_hash, "journal"), num_pieces)?;
        let mut pending = Bitfield::new(num_pieces);
        for p in old {
            pending.set(p);
        }
        Ok(Journal {
            file,
            snapshot_path: self.path(info_hash, "resume"),
            info_hash: *info_hash,
            num_pieces,
            pending,
            trusted: None,
        })
    }

    /// Caches a magnet's bencoded info dictionary (atomically replaced).
    pub fn save_metainfo(&self, info_hash: &InfoHash, info_bytes: &[u8]) -> Result<(), StoreError> {
        write_atomically(&self.path(info_hash, "info"), info_bytes)
    }

    /// The cached info dictionary, checked against the info-hash (v1: its
    /// SHA-1) so a damaged cache is never used.
    pub fn load_metainfo(&self, info_hash: &InfoHash) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(info_hash, "info");
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        let digest: [u8; 20] = Sha1::digest(&bytes).into();
        if digest != info_hash.0 {
            return Err(StoreError::ResumeCorrupt {
                path,
                reason: "the cached metadata does not match the info-hash".into(),
            });
        }
        Ok(Some(bytes))
    }

    /// Deletes everything stored for the torrent. Missing files are fine.
    pub fn remove(&self, info_hash: &InfoHash) -> Result<(), StoreError> {
        for ext in ["resume", "resume.tmp", "journal", "info", "info.tmp"] {
            let path = self.path(info_hash, ext);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("removing", &path, e)),
            }
        }
        Ok(())
    }
}

impl Journal {
    /// Appends `piece`. Call right after a verified piece was written: one
    /// 8-byte write, no fsync (it survives SIGKILL through the page cache;
    /// a power cut only costs the pieces since the last checkpoint).
    pub fn record(&mut self, piece: u32) -> Result<(), StoreError> {
        if piece >= self.num_pieces {
            return Err(StoreError::OutOfRange {
                path: self.snapshot_path.with_extension("journal"),
                piece,
                offset: 0,
                len: 0,
                piece_size: 0,
            });
        }
        self.file.append(piece)?;
        self.pending.set(piece);
        Ok(())
    }

    /// Makes `have` durable: syncs the data, writes the snapshot (temp file,
    /// fsync, rename, fsync folder), then empties the journal of what the
    /// snapshot now covers. `have` must only hold verified pieces; journal
    /// records not in it are kept.
    pub fn checkpoint(&mut self, storage: &Storage, have: &Bitfield) -> Result<(), StoreError> {
        let layout = storage.layout();
        if have.len() != self.num_pieces || layout.num_pieces() != self.num_pieces {
            return Err(StoreError::ResumeCorrupt {
                path: self.snapshot_path.clone(),
                reason: format!(
                    "checkpoint of {} pieces for a journal of {} and a torrent of {}",
                    have.len(),
                    self.num_pieces,
                    layout.num_pieces()
                ),
            });
        }
        // Data first: the snapshot may only claim pieces that are durable.
        storage.sync()?;
        // Newly trusted pieces this process did not write (re-hashed after
        // a restart) may sit in the page cache of a killed predecessor,
        // which `sync` knows nothing about.
        let newly = |p: u32| have.get(p) && !self.trusted.as_ref().is_some_and(|t| t.get(p));
        let touched = (0..layout.files().len()).filter(|&f| layout.file_pieces(f).any(newly));
        storage.sync_files(touched.collect::<Vec<_>>())?;

        let mut files = Vec::with_capacity(layout.files().len());
        for (i, spec) in layout.files().iter().enumerate() {
            files.push(if spec.padding {
                FileStamp::Missing
            } else {
                stamp(&storage.file_path(i))?
            });
        }
        let snapshot = Snapshot {
            info_hash: self.info_hash.0,
            download_dir: std::path::absolute(storage.root())
                .unwrap_or_else(|_| storage.root().to_path_buf()),
            piece_length: layout.piece_length(),
            total_length: layout.total_length(),
            have: have.clone(),
            files,
        };
        write_atomically(&self.snapshot_path, &snapshot.encode())?;

        // A crash before this point leaves records the snapshot already
        // covers; load() filters them out, so the order is safe.
        let keep: Vec<u32> = self.pending.iter_ones().filter(|&p| !have.get(p)).collect();
        self.file.reset(self.num_pieces, &keep)?;
        self.pending.clear_all();
        for p in keep {
            self.pending.set(p);
        }
        self.trusted = Some(have.clone());
        Ok(())
    }
}

fn decode_snapshot(
    path: &Path,
    bytes: &[u8],
    info_hash: &InfoHash,
    layout: &Layout,
) -> Result<Snapshot, StoreError> {
    let corrupt = |reason: String| StoreError::ResumeCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let s = Snapshot::decode(bytes).map_err(|e| match e {
        FormatError::Corrupt(reason) => corrupt(reason),
        FormatError::TooNew(version) => StoreError::ResumeTooNew {
            path: path.to_path_buf(),
            version,
        },
    })?;
    if s.info_hash != info_hash.0 {
        return Err(corrupt(format!(
            "it belongs to torrent {}",
            InfoHash(s.info_hash).to_hex()
        )));
    }
    let (want, got) = (
        (
            layout.num_pieces(),
            layout.piece_length(),
            layout.total_length(),
            layout.files().len(),
        ),
        (s.have.len(), s.piece_length, s.total_length, s.files.len()),
    );
    if want != got {
        return Err(corrupt(format!(
            "it describes {} pieces of {} bytes, {} bytes in {} files, but the torrent has {} pieces of {} bytes, {} bytes in {} files",
            got.0, got.1, got.2, got.3, want.0, want.1, want.2, want.3
        )));
    }
    Ok(s)
}

/// Size and mtime of a file, or `Missing` if it does not exist.
fn stamp(path: &Path) -> Result<FileStamp, StoreError> {
    match fs::metadata(path) {
        Ok(m) => Ok(FileStamp::Present {
            size: m.len(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FileStamp::Missing),
        Err(e) => Err(StoreError::io("checking", path, e)),
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("reading", path, e)),
    }
}

/// Replaces `path` so that after a crash it holds either the old or the new
/// contents, never a mix: temp file, fsync, rename, fsync the folder (the
/// rename itself is only durable once the folder is synced).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(|e| StoreError::io("creating", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StoreError::io("writing", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| StoreError::io("renaming", &tmp, e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("syncing", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_can_move_to_the_disk_pool() {
        fn assert_send<T: Send>() {}
        assert_send::<Journal>();
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ResumeStore>();
    }

    /// The v1 writers must keep producing exactly the frozen fixtures
    /// (tests/fixtures/README.md). When v2 arrives this test moves to the
    /// v2 fixtures; tests/resume.rs keeps loading the v1 ones.
    #[test]
    fn v1_writers_match_frozen_fixtures() {
        let mut have = Bitfield::new(8);
        for p in [0, 1, 2, 5] {
            have.set(p);
        }
        let s = Snapshot {
            info_hash: std::array::from_fn(|i| i as u8 + 1),
            download_dir: PathBuf::from(
                "/srv/riptide/downloads/0102030405060708090a0b0c0d0e0f1011121314",
            ),
            piece_length: 64,
            total_length: 478,
            have,
            files: vec![
                FileStamp::Present {
                    size: 100,
                    mtime_ns: 1_700_000_000_123_456_789,
                },
                FileStamp::Missing,
                FileStamp::Present {
                    size: 300,
                    mtime_ns: 1_700_000_001_000_000_000,
                },
                FileStamp::Present {
                    size: 0,
                    mtime_ns: 1_700_000_002_000_000_007,
                },
                FileStamp::Missing,
            ],
        };
        assert_eq!(snapshot::CURRENT_VERSION, 1);
        assert_eq!(s.encode(), include_bytes!("../../tests/fixtures/v1.resume"));
        assert_eq!(
            Snapshot::decode(include_bytes!("../../tests/fixtures/v1.resume")),
            Ok(s)
        );

        let fixture = include_bytes!("../../tests/fixtures/v1.journal");
        let mut j = journal::header(8).to_vec();
        for p in [3, 6, 5] {
            j.extend_from_slice(&journal::record(p));
        }
        assert_eq!(journal::VERSION, 1);
        assert_eq!(&fixture[..j.len()], &j[..]);
    }
}
