//! Torrents the engine knows (downloading, seeding, imported), and the
//! subtitles of a file.

use serde::Serialize;

use crate::db::{Db, on_pool};
use crate::error::LibraryError;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TorrentRecord {
    /// Lowercase hex.
    pub info_hash: String,
    pub name: String,
    /// "downloading", "seeding", "paused", "imported", …
    pub state: String,
    pub save_path: String,
    pub total_bytes: i64,
    pub added_at: i64,
    pub completed_at: Option<i64>,
    pub movie_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct SubtitleRecord {
    pub id: i64,
    pub file_id: i64,
    /// "sidecar", "embedded" or "download".
    pub source: String,
    /// The sidecar's path, or "stream:N".
    pub locator: String,
    pub language: Option<String>,
    pub format: String,
    pub is_default: bool,
    pub forced: bool,
    pub offset_ms: i64,
}

impl Db {
    /// Inserts or replaces the record of `t.info_hash`.
    pub async fn upsert_torrent(&self, t: &TorrentRecord) -> Result<(), LibraryError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO torrents (info_hash, name, state, save_path, total_bytes, added_at, \
             completed_at, movie_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (info_hash) DO UPDATE SET name = excluded.name, state = excluded.state, \
             save_path = excluded.save_path, total_bytes = excluded.total_bytes, \
             completed_at = excluded.completed_at, movie_id = excluded.movie_id"
        )
        .bind(&t.info_hash)
        .bind(&t.name)
        .bind(&t.state)
        .bind(&t.save_path)
        .bind(t.total_bytes)
        .bind(t.added_at)
        .bind(t.completed_at)
        .bind(t.movie_id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn torrents(&self) -> Result<Vec<TorrentRecord>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT info_hash, name, state, save_path, total_bytes, added_at, completed_at, movie_id \
             FROM torrents ORDER BY added_at, info_hash"
        )
        .fetch_all(p)
        .await)?)
    }

    pub async fn remove_torrent(&self, info_hash: &str) -> Result<bool, LibraryError> {
        let r = on_pool!(self, p => sqlx::query("DELETE FROM torrents WHERE info_hash = $1")
            .bind(info_hash)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(r > 0)
    }

    /// Sidecar files first, then embedded tracks in stream order.
    pub async fn subtitles(&self, file_id: i64) -> Result<Vec<SubtitleRecord>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, file_id, source, locator, language, format, is_default, forced, offset_ms \
             FROM subtitles WHERE file_id = $1 ORDER BY source DESC, locator"
        )
        .bind(file_id)
        .fetch_all(p)
        .await)?)
    }
}
