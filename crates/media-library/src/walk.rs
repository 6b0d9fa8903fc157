//! The filesystem half of a scan: a blocking walk (run it on the blocking
//! pool) that lists video and subtitle files with size and mtime, and
//! reports what it could not read instead of failing.
//!
//! - Symbolic links are followed (people link folders into their library);
//!   a folder reached twice (same device and inode) is a loop or a
//!   duplicate and is walked once.
//! - Names that are not UTF-8 cannot be stored or searched: reported and
//!   skipped.
//! - Unreadable folders are reported; the scan then keeps the database
//!   rows of files below them (they are not "missing", just unreadable).
//! - Hidden entries (".name": caches, import temp files) are skipped.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::release::{Ignored, ignored_by_name};

pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mkv", "mp4", "m4v", "avi", "webm", "mov", "ts", "m2ts", "mts", "wmv", "mpg", "mpeg", "flv",
    "ogv", "vob",
];
pub const SUBTITLE_EXTENSIONS: &[&str] = &["srt", "vtt", "ass", "ssa", "sub"];

/// A video file found by the walk.
#[derive(Debug, Clone)]
pub struct Found {
    /// Absolute path (the scan root is canonical; below it, as walked).
    pub path: String,
    /// Relative to the scan root, `/`-separated: what the name parser sees.
    pub rel: String,
    pub size: u64,
    pub mtime_ns: i64,
}

/// Something the scan skipped, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanProblem {
    Unreadable { path: PathBuf, error: String },
    NotUtf8 { path: PathBuf },
    SymlinkLoop { path: PathBuf },
    BrokenSymlink { path: PathBuf },
    DownloadsSkipped { path: PathBuf },
}

impl fmt::Display for ScanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanProblem::Unreadable { path, error } => write!(
                f,
                "cannot read {}: {error}; give the user running Riptide read access and scan again (its films stay in the library meanwhile)",
                path.display()
            ),
            ScanProblem::NotUtf8 { path } => write!(
                f,
                "skipped {}: the name is not valid UTF-8; rename it to add it to the library",
                path.display()
            ),
            ScanProblem::SymlinkLoop { path } => write!(
                f,
                "skipped {}: a symbolic link back to a folder already scanned (a loop)",
                path.display()
            ),
            ScanProblem::BrokenSymlink { path } => write!(
                f,
                "skipped {}: a symbolic link to something that does not exist",
                path.display()
            ),
            ScanProblem::DownloadsSkipped { path } => write!(
                f,
                "skipped {}: Riptide's downloads folder (unfinished torrents are imported when complete)",
                path.display()
            ),
        }
    }
}

#[derive(Debug, Default)]
pub struct Walk {
    pub videos: Vec<Found>,
    pub subtitles: Vec<String>,
    pub problems: Vec<ScanProblem>,
    /// Folders whose contents are unknown this time (unreadable, loops
    /// excluded): rows below them are left alone.
    pub unreadable: Vec<PathBuf>,
    pub samples: usize,
    pub extras: usize,
}

fn extension(name: &str) -> Option<String> {
    name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())
}

/// Walks `root` (canonical, UTF-8), skipping `skip` (the downloads folder).
pub fn walk(root: &Path, skip: Option<&Path>) -> Walk {
    let mut out = Walk::default();
    let mut visited = HashSet::new();
    if let Ok(m) = fs::metadata(root) {
        visited.insert((m.dev(), m.ino()));
    }
    // (absolute dir, relative dir) pairs; explicit stack, no recursion
    // limit to hit on deep trees.
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.problems.push(ScanProblem::Unreadable {
                    path: dir.clone(),
                    error: e.to_string(),
                });
                out.unreadable.push(dir);
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    out.problems.push(ScanProblem::Unreadable {
                        path: dir.clone(),
                        error: e.to_string(),
                    });
                    out.unreadable.push(dir.clone());
                    break;
                }
            };
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                out.problems.push(ScanProblem::NotUtf8 { path });
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let rel_child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(ft) = entry.file_type() else { continue };
            let meta = if ft.is_symlink() {
                match fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                        out.problems.push(ScanProblem::SymlinkLoop { path });
                        continue;
                    }
                    Err(_) => {
                        out.problems.push(ScanProblem::BrokenSymlink { path });
                        continue;
                    }
                }
            } else {
                match entry.metadata() {
                    Ok(m) => m,
                    Err(e) => {
                        out.problems.push(ScanProblem::Unreadable {
                            path,
                            error: e.to_string(),
                        });
                        continue;
                    }
                }
            };
            if meta.is_dir() {
                if skip.is_some_and(|s| path == s) {
                    out.problems.push(ScanProblem::DownloadsSkipped { path });
                    continue;
                }
                if !visited.insert((meta.dev(), meta.ino())) {
                    if ft.is_symlink() {
                        out.problems.push(ScanProblem::SymlinkLoop { path });
                    }
                    continue;
                }
                stack.push((path, rel_child));
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let Some(ext) = extension(&name) else {
                continue;
            };
            if SUBTITLE_EXTENSIONS.contains(&ext.as_str()) {
                out.subtitles.push(path.to_string_lossy().into_owned());
                continue;
            }
            if !VIDEO_EXTENSIONS.contains(&ext.as_str()) {
                continue;
            }
            match ignored_by_name(&rel_child) {
                Some(Ignored::Sample) => out.samples += 1,
                Some(Ignored::Extra) => out.extras += 1,
                None => out.videos.push(Found {
                    path: path.to_string_lossy().into_owned(),
                    rel: rel_child,
                    size: meta.len(),
                    mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                }),
            }
        }
    }
    // Deterministic order: ids and reports do not depend on readdir order.
    out.videos.sort_by(|a, b| a.path.cmp(&b.path));
    out.subtitles.sort();
    out
}
