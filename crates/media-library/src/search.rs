//! Listing and searching the library.
//!
//! Search is by title words (each query word is a prefix of a title word,
//! case- and accent-insensitive: "amelie" and "amél" find "Amélie"), year
//! and codec. Titles are folded in Rust ([`fold`]) into `files.search_text`
//! so both backends see the same words; SQLite indexes them with FTS5,
//! PostgreSQL with a `tsvector` (GIN). Everything else in the query is
//! shared SQL.

use serde::Serialize;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::db::{Backend, Db, on_pool};
use crate::error::LibraryError;

/// One film or episode in the library: a matched movie (TMDB title and
/// year, `tmdb_id` set) or an unmatched file (parsed title and year).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Entry {
    /// The file's id (every entry is one file on disk).
    pub id: i64,
    pub title: String,
    pub year: Option<i64>,
    /// `null` until the file is matched to TMDB.
    pub tmdb_id: Option<i64>,
    pub file_path: String,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
    pub movie_id: Option<i64>,
    pub season: Option<i64>,
    pub episode: Option<i64>,
}

/// What to look for; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    pub year: Option<i64>,
    /// A codec name as ffprobe or a release name spells it (`h264`, `x265`,
    /// `HEVC`, `DTS`, `DD+` …).
    pub codec: Option<String>,
}

/// Lower case, accents removed (NFKD minus combining marks), everything but
/// letters and digits turned into single spaces.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = true;
    for c in s.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// ffprobe's name for what people type.
pub fn canonical_codec(c: &str) -> String {
    let c = c.trim().to_ascii_lowercase();
    match c.as_str() {
        "x264" | "avc" | "h.264" | "h264" | "avc1" => "h264",
        "x265" | "h.265" | "h265" | "hevc" | "hvc1" | "hev1" => "hevc",
        "xvid" | "divx" | "mpeg-4" => "mpeg4",
        "dd" | "ac-3" | "dolby digital" => "ac3",
        "dd+" | "ddp" | "e-ac-3" | "eac-3" => "eac3",
        "dts-hd" | "dca" => "dts",
        "true-hd" => "truehd",
        _ => return c,
    }
    .to_string()
}

const SELECT: &str = "SELECT f.id, COALESCE(m.title, f.title) AS title, \
     COALESCE(m.year, f.year) AS year, m.tmdb_id, f.path AS file_path, \
     f.video_codec, f.audio_codec, f.duration, f.movie_id, f.season, f.episode \
     FROM files f LEFT JOIN movies m ON m.id = f.movie_id \
     WHERE f.present = TRUE AND f.probe_error IS NULL";

const ORDER: &str = " ORDER BY LOWER(COALESCE(m.title, f.title)), f.season, f.episode, f.path";

impl Db {
    /// Every playable film and episode, matched or not, by title.
    pub async fn list(&self) -> Result<Vec<Entry>, LibraryError> {
        let sql = format!("{SELECT}{ORDER}");
        Ok(on_pool!(self, p => sqlx::query_as::<_, Entry>(&sql).fetch_all(p).await)?)
    }

    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<Entry>, LibraryError> {
        let words: Vec<String> = fold(&q.text)
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        let mut sql = SELECT.to_string();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let text_arg = if words.is_empty() {
            None
        } else {
            // Words are letters and digits only (fold), so they cannot
            // inject FTS5 or tsquery syntax.
            match self.backend() {
                Backend::Sqlite => {
                    sql += &format!(
                        " AND f.id IN (SELECT rowid FROM files_fts WHERE files_fts MATCH ${})",
                        next()
                    );
                    Some(
                        words
                            .iter()
                            .map(|w| format!("\"{w}\"*"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                }
                Backend::Postgres => {
                    sql += &format!(" AND f.search_tsv @@ to_tsquery('simple', ${})", next());
                    Some(
                        words
                            .iter()
                            .map(|w| format!("{w}:*"))
                            .collect::<Vec<_>>()
                            .join(" & "),
                    )
                }
            }
        };
        if q.year.is_some() {
            sql += &format!(" AND COALESCE(m.year, f.year) = ${}", next());
        }
        let codec = q.codec.as_deref().map(canonical_codec);
        if codec.is_some() {
            let i = next();
            sql += &format!(
                " AND (f.video_codec = ${i} OR (',' || COALESCE(f.audio_codecs, '') || ',') LIKE ('%,' || ${i} || ',%'))"
            );
        }
        sql += ORDER;
        let rows = on_pool!(self, p => {
            let mut query = sqlx::query_as::<_, Entry>(&sql);
            if let Some(t) = &text_arg {
                query = query.bind(t);
            }
            if let Some(y) = q.year {
                query = query.bind(y);
            }
            if let Some(c) = &codec {
                query = query.bind(c);
            }
            query.fetch_all(p).await
        })?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        assert_eq!(fold("Amélie"), "amelie");
        assert_eq!(fold("Léon: The Professional"), "leon the professional");
        assert_eq!(fold("  2001: A Space Odyssey!! "), "2001 a space odyssey");
        assert_eq!(fold("ÉCOLE"), "ecole");
        assert_eq!(fold("Se7en"), "se7en");
        assert_eq!(fold("千と千尋の神隠し"), "千と千尋の神隠し");
        assert_eq!(fold("\"*) OR 1=1 --"), "or 1 1");
    }

    #[test]
    fn codec_aliases() {
        assert_eq!(canonical_codec("x265"), "hevc");
        assert_eq!(canonical_codec("H.264"), "h264");
        assert_eq!(canonical_codec("XviD"), "mpeg4");
        assert_eq!(canonical_codec("DD+"), "eac3");
        assert_eq!(canonical_codec("opus"), "opus");
    }
}

/// Everything the library knows about one file (broken and missing ones
/// included): for detail pages, diagnostics and tests.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct FileRecord {
    pub id: i64,
    pub path: String,
    pub size: i64,
    pub present: bool,
    pub kind: String,
    pub title: String,
    pub year: Option<i64>,
    pub season: Option<i64>,
    pub episode: Option<i64>,
    pub resolution: Option<String>,
    pub source: Option<String>,
    pub release_group: Option<String>,
    pub edition: Option<String>,
    pub language: Option<String>,
    pub container: Option<String>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub audio_codecs: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub duration: Option<f64>,
    pub probe_error: Option<String>,
    pub movie_id: Option<i64>,
}

impl Db {
    /// One row of the files table.
    pub async fn file(&self, id: i64) -> Result<Option<FileRecord>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, path, size, present, kind, title, year, season, episode, resolution, \
             source, release_group, edition, language, container, video_codec, audio_codec, \
             audio_codecs, width, height, duration, probe_error, movie_id FROM files WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await)?)
    }

    /// Every row of the files table, by path.
    pub async fn files(&self) -> Result<Vec<FileRecord>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, path, size, present, kind, title, year, season, episode, resolution, \
             source, release_group, edition, language, container, video_codec, audio_codec, \
             audio_codecs, width, height, duration, probe_error, movie_id FROM files ORDER BY path"
        )
        .fetch_all(p)
        .await)?)
    }
}
