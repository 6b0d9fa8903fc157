//! Torrent pieces on disk.
//!
//! The disk side of the engine, all synchronous `std` code: the engine calls
//! it from a bounded blocking pool, never from async threads. Unix only
//! (`pread`/`pwritev`, `fdatasync`, mtimes in nanoseconds).
//!
//! - [`layout`]: pieces ↔ files arithmetic ([`Layout`], [`Layout::spans`]).
//! - [`sanitize`]: hostile torrent names → safe relative paths; a torrent can
//!   never write outside its download folder.
//! - [`storage`]: positioned reads and writes (`pread`/`pwritev`), piece
//!   hashing, `fdatasync` ([`Storage`]).
//! - [`recheck()`]: hash every piece against the torrent.
//! - [`resume`]: versioned checkpoint snapshots plus an append-only journal,
//!   so a restart trusts what was durable and re-hashes only the rest
//!   ([`ResumeStore`], [`Journal`]).
//!
//! - [`import()`]: a finished film into the library: reflink, else hard
//!   link, else move; crash-safe ([`ImportMethod`]).
//! - [`manifest`]: the media root's versioned [`StorageManifest`] and its
//!   upgrade chain.
//!
//! Every error is a [`StoreError`] that names the file and says what the
//! user can do; I/O failures never panic.

pub mod error;
pub mod import;
pub mod layout;
pub mod manifest;
pub mod recheck;
pub mod resume;
pub mod sanitize;
pub mod storage;

pub use error::StoreError;
pub use import::{ImportMethod, import};
pub use layout::{FileSpec, Layout, RawFile, Span};
pub use manifest::{MigrationRecord, StorageManifest, StoreLayout};
pub use recheck::recheck;
pub use resume::{Journal, ResumeStore, Resumed};
pub use sanitize::sanitize_component;
pub use storage::{Storage, StorageOptions};
