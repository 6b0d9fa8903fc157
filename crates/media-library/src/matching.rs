//! Matching unmatched files to TMDB movies.
//!
//! A file is matched when TMDB's search for its parsed title (and year)
//! returns a movie with the same folded title and a year within one (see
//! [`crate::tmdb::best_match`]). The match upserts the `movies` row (by
//! `tmdb_id`, unique), links the file, adds the TMDB titles to the file's
//! search words and caches the poster. Files with no convincing result are
//! stamped and not searched again for a week. Episodes are not matched
//! (the movie endpoints do not know them).

use std::path::Path;

use crate::db::{Db, on_pool};
use crate::error::LibraryError;
use crate::search::fold;
use crate::tmdb::{ImageConfig, Tmdb, TmdbError, best_match};

const RECHECK_AFTER_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Default, Clone)]
pub struct MatchReport {
    pub matched: usize,
    pub unmatched: usize,
    pub errors: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct Candidate {
    id: i64,
    title: String,
    year: Option<i64>,
    path: String,
    video_codec: Option<String>,
    audio_codec: Option<String>,
}

impl Db {
    /// Recomputes a file's search words from its parsed title and its
    /// movie's title.
    pub(crate) async fn refresh_search_text(&self, file_id: i64) -> Result<(), LibraryError> {
        let row: Option<(String, Option<String>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT f.title, m.title FROM files f LEFT JOIN movies m ON m.id = f.movie_id WHERE f.id = $1"
        )
        .bind(file_id)
        .fetch_optional(p)
        .await)?;
        if let Some((parsed, movie)) = row {
            let text = [Some(parsed), movie]
                .iter()
                .flatten()
                .map(|t| fold(t))
                .collect::<Vec<_>>()
                .join(" ");
            on_pool!(self, p => sqlx::query("UPDATE files SET search_text = $1 WHERE id = $2")
                .bind(text)
                .bind(file_id)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(())
    }
}

/// Matches every unmatched, playable movie file that was not searched in
/// the last week. Stops at the first error that would repeat for every file
/// (bad key, TMDB unreachable); other errors skip one file.
pub(crate) async fn match_unmatched(
    db: &Db,
    tmdb: &Tmdb,
    posters: &Path,
) -> Result<MatchReport, LibraryError> {
    let now = crate::unix_now();
    let candidates: Vec<Candidate> = on_pool!(db, p => sqlx::query_as(
        "SELECT id, title, year, path, video_codec, audio_codec FROM files \
         WHERE movie_id IS NULL AND present = TRUE AND probe_error IS NULL AND kind = 'movie' \
         AND (tmdb_checked_at IS NULL OR tmdb_checked_at < $1) ORDER BY path"
    )
    .bind(now - RECHECK_AFTER_SECS)
    .fetch_all(p)
    .await)?;
    let mut report = MatchReport::default();
    let mut images: Option<ImageConfig> = None;
    for c in candidates {
        match match_one(db, tmdb, &c, posters, &mut images).await {
            Ok(true) => report.matched += 1,
            Ok(false) => {
                report.unmatched += 1;
                on_pool!(db, p => sqlx::query("UPDATE files SET tmdb_checked_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(c.id)
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected()))?;
            }
            Err(LibraryError::Tmdb(e)) => {
                let fatal = matches!(
                    e,
                    TmdbError::Unauthorized
                        | TmdbError::Http { .. }
                        | TmdbError::RateLimited { .. }
                );
                report.errors.push(format!("{}: {e}", c.path));
                if fatal {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

async fn match_one(
    db: &Db,
    tmdb: &Tmdb,
    c: &Candidate,
    posters: &Path,
    images: &mut Option<ImageConfig>,
) -> Result<bool, LibraryError> {
    let mut results = tmdb.search_movie(&c.title, c.year).await?;
    if results.is_empty() && c.year.is_some() {
        // TMDB's year filter is the primary release year; a name's year
        // can be a country's release a year later.
        results = tmdb.search_movie(&c.title, None).await?;
    }
    let Some(hit) = best_match(&c.title, c.year, &results) else {
        return Ok(false);
    };
    let details = tmdb.movie(hit.id).await?;
    let movie_id: i64 = on_pool!(db, p => sqlx::query_scalar(
        "INSERT INTO movies (tmdb_id, title, year, rating, file_path, video_codec, audio_codec) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (tmdb_id) DO UPDATE SET title = excluded.title, year = excluded.year, \
         rating = excluded.rating, file_path = COALESCE(movies.file_path, excluded.file_path), \
         video_codec = COALESCE(movies.video_codec, excluded.video_codec), \
         audio_codec = COALESCE(movies.audio_codec, excluded.audio_codec) \
         RETURNING id"
    )
    .bind(details.id)
    .bind(&details.title)
    .bind(details.year())
    .bind(details.vote_average)
    .bind(&c.path)
    .bind(&c.video_codec)
    .bind(&c.audio_codec)
    .fetch_one(p)
    .await)?;
    let words = [
        Some(c.title.as_str()),
        Some(details.title.as_str()),
        details.original_title.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(fold)
    .collect::<Vec<_>>()
    .join(" ");
    on_pool!(db, p => sqlx::query(
        "UPDATE files SET movie_id = $1, search_text = $2, tmdb_checked_at = $3 WHERE id = $4"
    )
    .bind(movie_id)
    .bind(words)
    .bind(crate::unix_now())
    .bind(c.id)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    if let Some(poster) = &details.poster_path {
        if images.is_none() {
            *images = Some(tmdb.configuration().await?);
        }
        if let Some(img) = images.as_ref() {
            // A missing poster is cosmetic: log it, keep the match.
            if let Err(e) = tmdb.poster(img, poster, details.id, posters).await {
                tracing::warn!("poster of TMDB movie {}: {e}", details.id);
            }
        }
    }
    Ok(true)
}
