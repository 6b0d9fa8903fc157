//! What the library keeps of ffprobe's answer, and the probe cache.
//!
//! ffprobe costs 30–100 ms a file; a library of thousands is probed once.
//! Results are cached by (file name, size, mtime): a rescan of an unchanged
//! file never gets here (the files table already matches), and the cache
//! also covers films that moved (import keeps the mtime) and databases
//! rebuilt from scratch.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::db::{Db, on_pool};
use crate::error::LibraryError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaSummary {
    /// "mp4", "mkv", "webm", "avi", …
    pub container: Option<String>,
    pub duration: Option<f64>,
    pub video_codec: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// The default audio track's codec (else the first track's).
    pub audio_codec: Option<String>,
    /// Every audio track's codec, in stream order.
    pub audio_codecs: Vec<String>,
    pub subtitles: Vec<EmbeddedSubtitle>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedSubtitle {
    pub index: u32,
    pub codec: String,
    pub language: Option<String>,
    pub default: bool,
    pub forced: bool,
}

impl MediaSummary {
    pub fn from_probe(info: &ffmpeg::MediaInfo, path: &Path) -> MediaSummary {
        let video = info.video.first();
        let audio = info.audio.iter().find(|a| a.default).or(info.audio.first());
        MediaSummary {
            container: Some(info.container(path)).filter(|c| !c.is_empty()),
            duration: info.duration_secs,
            video_codec: video.map(|v| v.codec.clone()),
            width: video.map(|v| i64::from(v.width)),
            height: video.map(|v| i64::from(v.height)),
            audio_codec: audio.map(|a| a.codec.clone()),
            audio_codecs: info.audio.iter().map(|a| a.codec.clone()).collect(),
            subtitles: info
                .subtitles
                .iter()
                .map(|s| EmbeddedSubtitle {
                    index: s.index,
                    codec: s.codec.clone(),
                    language: s.language.clone(),
                    default: s.default,
                    forced: s.forced,
                })
                .collect(),
        }
    }
}

/// A cached probe: the summary, or ffprobe's error for a broken file.
pub type Probed = Result<MediaSummary, String>;

/// Cache key: (file name, size, mtime in ns).
pub type CacheKey = (String, i64, i64);

#[derive(sqlx::FromRow)]
struct CacheRow {
    file_name: String,
    size: i64,
    mtime_ns: i64,
    info: Option<String>,
    error: Option<String>,
}

impl Db {
    /// The whole probe cache (a few hundred bytes per film).
    pub(crate) async fn probe_cache(&self) -> Result<HashMap<CacheKey, Probed>, LibraryError> {
        let rows: Vec<CacheRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT file_name, size, mtime_ns, info, error FROM probe_cache"
        )
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let v = match (r.info, r.error) {
                    (Some(json), _) => Ok(serde_json::from_str(&json).ok()?),
                    (None, Some(e)) => Err(e),
                    (None, None) => return None,
                };
                Some(((r.file_name, r.size, r.mtime_ns), v))
            })
            .collect())
    }

    /// Stores probe results (used by the scanner, and by benchmarks to
    /// start from a warm cache).
    pub async fn cache_probes(&self, entries: &[(CacheKey, Probed)]) -> Result<(), LibraryError> {
        let now = crate::unix_now();
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for ((name, size, mtime), v) in entries {
                let (info, error) = match v {
                    Ok(s) => (Some(serde_json::to_string(s).expect("summary serializes")), None),
                    Err(e) => (None, Some(e.clone())),
                };
                sqlx::query(
                    "INSERT INTO probe_cache (file_name, size, mtime_ns, info, error, probed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (file_name, size, mtime_ns) DO UPDATE SET \
                     info = excluded.info, error = excluded.error, probed_at = excluded.probed_at",
                )
                .bind(name)
                .bind(size)
                .bind(mtime)
                .bind(info)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        })?;
        Ok(())
    }
}
