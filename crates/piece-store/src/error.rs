//! The one error type of this crate.
//!
//! Every variant a user can see names the file involved and says what to do
//! about it. OS errors are classified once, in [`StoreError::io`], so the
//! call sites only say what they were doing ("writing", "creating", …) and
//! the user gets "no space left on device writing /dl/x.mkv" instead of
//! "os error 28".

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no space left on device {action} {path}: free up space or move the download folder to a bigger disk"
    )]
    NoSpace { action: &'static str, path: PathBuf },

    #[error(
        "disk quota exceeded {action} {path}: raise the quota of the user running Riptide or free up space"
    )]
    QuotaExceeded { action: &'static str, path: PathBuf },

    #[error(
        "permission denied {action} {path}: give the user running Riptide read and write access to that folder"
    )]
    PermissionDenied { action: &'static str, path: PathBuf },

    #[error(
        "read-only file system {action} {path}: remount it read-write or choose another download folder"
    )]
    ReadOnlyFilesystem { action: &'static str, path: PathBuf },

    #[error(
        "file too large for its file system {action} {path}: FAT32 caps files at 4 GiB, use a disk formatted as ext4, NTFS or exFAT"
    )]
    FileTooLarge { action: &'static str, path: PathBuf },

    #[error(
        "a parent of {path} is a regular file, not a folder ({action}): move that file out of the way"
    )]
    NotADirectory { action: &'static str, path: PathBuf },

    #[error("{action} {path} failed: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Expected during normal operation: the piece was never written, or the
    /// file was deleted or truncated behind our back. The piece has to be
    /// downloaded (again).
    #[error(
        "piece {piece} is not on disk: {path} is missing or shorter than expected; the piece will be downloaded again"
    )]
    NotOnDisk { piece: u32, path: PathBuf },

    /// The torrent's file list cannot be laid out on disk.
    #[error("invalid torrent \"{name}\": {reason}; the .torrent file is broken, get another copy")]
    InvalidTorrent { name: String, reason: String },

    /// A caller asked for bytes outside a piece: a bug in the caller (or a
    /// peer request that should have been rejected earlier), never a panic.
    #[error(
        "request outside the torrent in {path}: piece {piece}, offset {offset}, length {len} (the piece has {piece_size} bytes); this is a bug, please report it"
    )]
    OutOfRange {
        path: PathBuf,
        piece: u32,
        offset: u64,
        len: u64,
        piece_size: u32,
    },

    #[error(
        "resume data {path} is damaged ({reason}); delete it and Riptide will recheck the torrent's files"
    )]
    ResumeCorrupt { path: PathBuf, reason: String },

    #[error(
        "resume data {path} was written by a newer Riptide (format version {version}); upgrade Riptide, or delete the file to recheck the torrent's files"
    )]
    ResumeTooNew { path: PathBuf, version: i64 },

    #[error("recheck of {path} was cancelled")]
    Cancelled { path: PathBuf },

    #[error("cannot import {path}: it does not exist; was the download moved or deleted?")]
    ImportSourceMissing { path: PathBuf },

    #[error("cannot import {path}: not a regular file; import each file of a torrent on its own")]
    ImportNotAFile { path: PathBuf },

    #[error(
        "cannot import to {path}: a different file is already there; move it out of the way or remove it, then import again"
    )]
    ImportDestinationExists { path: PathBuf },

    #[error(
        "storage manifest {path} is damaged ({reason}); restore it from a backup, or move it away and Riptide will start an empty layout (your files stay where they are)"
    )]
    ManifestCorrupt { path: PathBuf, reason: String },

    #[error(
        "storage manifest {path} was written by a newer Riptide (layout version {version}); upgrade Riptide"
    )]
    ManifestTooNew { path: PathBuf, version: u64 },

    #[error(
        "cannot upgrade the media folder layout: {path} and {other} both exist; move one of them out of the way and start Riptide again (nothing was deleted)"
    )]
    MigrationConflict { path: PathBuf, other: PathBuf },
}

impl StoreError {
    /// Classifies an OS error. `action` is a present participle that reads
    /// well after "permission denied": "writing", "creating", "reading".
    pub(crate) fn io(action: &'static str, path: &Path, err: io::Error) -> StoreError {
        let path = path.to_path_buf();
        // Raw errno first: the ErrorKind mapping of some codes (EDQUOT, EFBIG)
        // is newer than others and we want the same answer everywhere.
        #[cfg(unix)]
        if let Some(code) = err.raw_os_error() {
            match code {
                libc::ENOSPC => return StoreError::NoSpace { action, path },
                libc::EDQUOT => return StoreError::QuotaExceeded { action, path },
                libc::EACCES | libc::EPERM => {
                    return StoreError::PermissionDenied { action, path };
                }
                libc::EROFS => return StoreError::ReadOnlyFilesystem { action, path },
                libc::EFBIG => return StoreError::FileTooLarge { action, path },
                libc::ENOTDIR => return StoreError::NotADirectory { action, path },
                _ => {}
            }
        }
        match err.kind() {
            io::ErrorKind::StorageFull => StoreError::NoSpace { action, path },
            io::ErrorKind::PermissionDenied => StoreError::PermissionDenied { action, path },
            io::ErrorKind::ReadOnlyFilesystem => StoreError::ReadOnlyFilesystem { action, path },
            io::ErrorKind::NotADirectory => StoreError::NotADirectory { action, path },
            _ => StoreError::Io {
                action,
                path,
                source: err,
            },
        }
    }

    /// The file the error is about, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            StoreError::NoSpace { path, .. }
            | StoreError::QuotaExceeded { path, .. }
            | StoreError::PermissionDenied { path, .. }
            | StoreError::ReadOnlyFilesystem { path, .. }
            | StoreError::FileTooLarge { path, .. }
            | StoreError::NotADirectory { path, .. }
            | StoreError::Io { path, .. }
            | StoreError::NotOnDisk { path, .. }
            | StoreError::OutOfRange { path, .. }
            | StoreError::ResumeCorrupt { path, .. }
            | StoreError::ResumeTooNew { path, .. }
            | StoreError::Cancelled { path }
            | StoreError::ImportSourceMissing { path }
            | StoreError::ImportNotAFile { path }
            | StoreError::ImportDestinationExists { path }
            | StoreError::ManifestCorrupt { path, .. }
            | StoreError::ManifestTooNew { path, .. }
            | StoreError::MigrationConflict { path, .. } => Some(path),
            StoreError::InvalidTorrent { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: i32, action: &'static str) -> StoreError {
        StoreError::io(
            action,
            Path::new("/dl/a.mkv"),
            io::Error::from_raw_os_error(code),
        )
    }

    #[test]
    fn os_errors_become_actionable_messages() {
        assert_eq!(
            classify(libc::ENOSPC, "writing").to_string(),
            "no space left on device writing /dl/a.mkv: free up space or move the download folder to a bigger disk"
        );
        assert_eq!(
            classify(libc::EACCES, "creating").to_string(),
            "permission denied creating /dl/a.mkv: give the user running Riptide read and write access to that folder"
        );
        assert!(matches!(
            classify(libc::EROFS, "writing"),
            StoreError::ReadOnlyFilesystem { .. }
        ));
        assert!(matches!(
            classify(libc::EDQUOT, "writing"),
            StoreError::QuotaExceeded { .. }
        ));
        assert!(matches!(
            classify(libc::EFBIG, "writing"),
            StoreError::FileTooLarge { .. }
        ));
        assert!(matches!(
            classify(libc::ENOTDIR, "creating"),
            StoreError::NotADirectory { .. }
        ));
        let other = classify(libc::EIO, "reading");
        assert!(matches!(other, StoreError::Io { .. }));
        assert!(other.to_string().starts_with("reading /dl/a.mkv failed: "));
        assert_eq!(other.path(), Some(Path::new("/dl/a.mkv")));
    }
}
