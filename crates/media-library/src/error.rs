//! The crate's error type: each variant says what failed and what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error(
        "cannot open the library database {url}: {source}; check the path or URL and that the server is running"
    )]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error("cannot bring the library database up to date: {0}; restore a backup or report a bug")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    #[error("library database query failed: {0}")]
    Database(#[from] sqlx::Error),

    #[error(
        "database URL \"{0}\" is not supported: use a file path (SQLite) or postgres://user@host/db"
    )]
    UnsupportedUrl(String),

    #[error("cannot scan {path}: it does not exist; check the path")]
    ScanRootMissing { path: PathBuf },

    #[error("cannot scan {path}: it is not a folder; give the folder that holds your films")]
    ScanRootNotADirectory { path: PathBuf },

    #[error("cannot scan {path}: {source}; give the user running Riptide read access to it")]
    ScanRootUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot scan {path}: the path is not valid UTF-8; rename the folder")]
    ScanRootNotUtf8 { path: PathBuf },

    #[error(
        "cannot scan {path}: it is inside the downloads folder {downloads}, where torrents are still being written; finished films are imported into the library automatically, so scan a folder outside downloads"
    )]
    ScanInsideDownloads { path: PathBuf, downloads: PathBuf },

    #[error(
        "the library folder {library} is inside the downloads folder {downloads}; choose folders side by side (the default is MEDIA_ROOT/library and MEDIA_ROOT/downloads)"
    )]
    LibraryInsideDownloads {
        library: PathBuf,
        downloads: PathBuf,
    },

    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Tmdb(#[from] crate::tmdb::TmdbError),

    #[error("a background task failed: {0}; this is a bug, please report it")]
    Task(String),
}
