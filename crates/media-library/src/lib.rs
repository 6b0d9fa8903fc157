//! Riptide's movie library: the only crate that talks SQL.
//!
//! - [`db`]: SQLite (default, `DATA_DIR/riptide.db`, WAL) or PostgreSQL
//!   (`postgres://…`), one migration set per backend with matching versions.
//! - [`scan`]: `scan(path)` walks a folder of films ([`walk`]), parses
//!   release names ([`release`], via `hunch`), probes with ffprobe through
//!   the `ffmpeg` crate ([`media_info`], cached), and upserts `files`.
//!   Incremental by size + mtime.
//! - [`tmdb`] + [`matching`]: TMDB v3 search/details/configuration,
//!   posters cached in `DATA_DIR/posters/`; matched films get a `movies`
//!   row (the brief's table) that their file points at.
//! - [`search`]: list and search (title prefix, accent- and
//!   case-insensitive; year; codec). FTS5 on SQLite, tsvector on Postgres.
//! - [`accounts`], [`torrents`]: users, watch progress, torrents,
//!   subtitles; [`auth`]: login sessions and API tokens (digests only).
//!
//! Invariants:
//! - A scan never changes or deletes a media file, and never deletes a
//!   row: files that vanish are marked not present (their progress kept).
//! - One row per path: rescans update, never duplicate.
//! - Movies are unique by `tmdb_id`.
//! - Filesystem walks and hashing run on the blocking pool, never on async
//!   threads.

pub mod accounts;
pub mod auth;
pub mod db;
pub mod error;
pub mod matching;
pub mod media_info;
pub mod release;
pub mod scan;
pub mod search;
pub mod tmdb;
pub mod torrents;
pub mod walk;

use std::path::{Component, Path, PathBuf};

pub use db::{Backend, Db};
pub use error::LibraryError;
pub use matching::MatchReport;
pub use media_info::MediaSummary;
pub use release::ReleaseName;
pub use scan::{BrokenFile, ScanOptions, ScanReport};
pub use search::{Entry, FileRecord, SearchQuery};
pub use tmdb::{Tmdb, TmdbConfig};
pub use walk::ScanProblem;

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Where the library keeps things; built once from the config.
#[derive(Debug, Clone)]
pub struct LibraryConfig {
    /// Default `./riptide-data`.
    pub data_dir: PathBuf,
    /// `postgres://…`, or `None` for SQLite at `DATA_DIR/riptide.db`.
    pub database_url: Option<String>,
    /// Default `DATA_DIR/media`; holds `downloads/` and `library/`.
    pub media_root: PathBuf,
    /// Overrides `MEDIA_ROOT/downloads`.
    pub downloads_dir: Option<PathBuf>,
    /// Overrides `MEDIA_ROOT/library`.
    pub library_dir: Option<PathBuf>,
    pub tmdb: TmdbConfig,
    pub probe_concurrency: usize,
}

impl LibraryConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> LibraryConfig {
        let data_dir = data_dir.into();
        LibraryConfig {
            media_root: data_dir.join("media"),
            data_dir,
            database_url: None,
            downloads_dir: None,
            library_dir: None,
            tmdb: TmdbConfig::default(),
            probe_concurrency: ScanOptions::default().probe_concurrency,
        }
    }

    pub fn database_target(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => self
                .data_dir
                .join("riptide.db")
                .to_string_lossy()
                .into_owned(),
        }
    }

    pub fn downloads_dir(&self) -> PathBuf {
        self.downloads_dir
            .clone()
            .unwrap_or_else(|| self.media_root.join(piece_store::manifest::DOWNLOADS_DIR))
    }

    pub fn library_dir(&self) -> PathBuf {
        self.library_dir
            .clone()
            .unwrap_or_else(|| self.media_root.join(piece_store::manifest::LIBRARY_DIR))
    }

    pub fn posters_dir(&self) -> PathBuf {
        self.data_dir.join("posters")
    }

    /// Refuses a library folder inside the downloads folder: a scan of the
    /// library would pick up half-written torrents, and an import would
    /// move files under a torrent that is still writing them.
    pub fn validate(&self) -> Result<(), LibraryError> {
        let (lib, dl) = (lexical(&self.library_dir()), lexical(&self.downloads_dir()));
        if lib.starts_with(&dl) {
            return Err(LibraryError::LibraryInsideDownloads {
                library: self.library_dir(),
                downloads: self.downloads_dir(),
            });
        }
        Ok(())
    }
}

/// Absolute, with `.` and `..` resolved by name (the folders may not
/// exist yet, so no canonicalize), and symlinks resolved where they do.
fn lexical(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The library: database + config + optional TMDB client.
#[derive(Debug, Clone)]
pub struct Library {
    db: Db,
    config: LibraryConfig,
    tmdb: Option<Tmdb>,
}

impl Library {
    /// Checks the config, opens (and migrates) the database.
    pub async fn open(config: LibraryConfig) -> Result<Library, LibraryError> {
        config.validate()?;
        let tmdb = Tmdb::new(&config.tmdb)?;
        let db = Db::open(&config.database_target()).await?;
        Ok(Library { db, config, tmdb })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn config(&self) -> &LibraryConfig {
        &self.config
    }

    /// Scans `path` (see [`scan`]), then matches unmatched films to TMDB
    /// when an API key is configured.
    pub async fn scan(&self, path: &Path) -> Result<ScanReport, LibraryError> {
        let opts = ScanOptions {
            downloads_dir: Some(self.config.downloads_dir()),
            probe_concurrency: self.config.probe_concurrency,
        };
        let mut report = scan::scan(&self.db, path, &opts).await?;
        if self.tmdb.is_some() {
            let m = self.match_unmatched().await?;
            report.matched = m.matched;
            report.match_errors = m.errors;
        }
        Ok(report)
    }

    /// Matches files that have no TMDB movie yet; a no-op without a key.
    pub async fn match_unmatched(&self) -> Result<MatchReport, LibraryError> {
        match &self.tmdb {
            Some(t) => matching::match_unmatched(&self.db, t, &self.config.posters_dir()).await,
            None => Ok(MatchReport::default()),
        }
    }

    pub async fn list(&self) -> Result<Vec<Entry>, LibraryError> {
        self.db.list().await
    }

    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<Entry>, LibraryError> {
        self.db.search(q).await
    }

    pub async fn close(&self) {
        self.db.close().await
    }
}
