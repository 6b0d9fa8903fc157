//! `scan(path)`: bring the database in line with a folder of films.
//!
//! 1. Walk the folder on the blocking pool ([`crate::walk`]).
//! 2. Compare with the `files` table: a file whose size and mtime did not
//!    change is skipped without parsing or probing, so a rescan of an
//!    unchanged library is one walk and one query.
//! 3. New and changed files: parse the release name, take ffprobe's answer
//!    from the probe cache or run ffprobe (a bounded number at a time).
//! 4. One transaction: upsert files by path (a rescan never duplicates a
//!    row), embedded and sidecar subtitles, and mark files that vanished
//!    as not present (kept, with their watch progress, in case they come
//!    back). Folders that could not be read keep their rows untouched.
//!
//! Broken files (ffprobe fails, zero bytes) are recorded and reported in
//! every scan's report, never fatal, and never listed as playable.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::db::{Db, on_pool};
use crate::error::LibraryError;
use crate::media_info::{CacheKey, MediaSummary, Probed};
use crate::release::{self, ReleaseName};
use crate::search::fold;
use crate::walk::{self, Found, ScanProblem, Walk};

#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Riptide's downloads folder: refused as a scan root, skipped inside one.
    pub downloads_dir: Option<PathBuf>,
    /// ffprobe processes at a time.
    pub probe_concurrency: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            downloads_dir: None,
            probe_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A file that is in the library but cannot be played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenFile {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    pub root: PathBuf,
    /// Feature videos found (samples and extras not counted).
    pub videos: usize,
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Rows of this folder whose file is gone (kept, marked not present).
    pub missing: usize,
    pub samples_ignored: usize,
    pub extras_ignored: usize,
    /// ffprobe runs this scan, and answers taken from the probe cache.
    pub probed: usize,
    pub probe_cache_hits: usize,
    pub sidecar_subtitles: usize,
    pub broken: Vec<BrokenFile>,
    pub problems: Vec<ScanProblem>,
    /// Files matched to TMDB during this scan.
    pub matched: usize,
    /// Why TMDB matching stopped or skipped files, if it did.
    pub match_errors: Vec<String>,
    pub elapsed: Duration,
}

#[derive(sqlx::FromRow)]
struct Known {
    id: i64,
    path: String,
    size: i64,
    mtime_ns: i64,
    present: bool,
    probe_error: Option<String>,
    movie_id: Option<i64>,
}

/// A new or changed file, ready to be written.
struct Pending {
    found: Found,
    name: ReleaseName,
    probe: Probed,
}

fn io_kind_error(path: &Path, e: std::io::Error) -> LibraryError {
    match e.kind() {
        std::io::ErrorKind::NotFound => LibraryError::ScanRootMissing {
            path: path.to_path_buf(),
        },
        std::io::ErrorKind::NotADirectory => LibraryError::ScanRootNotADirectory {
            path: path.to_path_buf(),
        },
        _ => LibraryError::ScanRootUnreadable {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Checks the scan root (blocking: a few syscalls) and returns it
/// canonical, plus the downloads folder to skip inside it.
fn check_root(root: &Path, opts: &ScanOptions) -> Result<(PathBuf, Option<PathBuf>), LibraryError> {
    let meta = std::fs::metadata(root).map_err(|e| io_kind_error(root, e))?;
    if !meta.is_dir() {
        return Err(LibraryError::ScanRootNotADirectory {
            path: root.to_path_buf(),
        });
    }
    let canon = std::fs::canonicalize(root).map_err(|e| io_kind_error(root, e))?;
    if canon.to_str().is_none() {
        return Err(LibraryError::ScanRootNotUtf8 {
            path: root.to_path_buf(),
        });
    }
    std::fs::read_dir(&canon).map_err(|e| io_kind_error(root, e))?;
    let downloads = opts
        .downloads_dir
        .as_ref()
        .and_then(|d| std::fs::canonicalize(d).ok());
    if let Some(d) = downloads.as_ref().filter(|d| canon.starts_with(d)) {
        return Err(LibraryError::ScanInsideDownloads {
            path: root.to_path_buf(),
            downloads: d.clone(),
        });
    }
    let skip = downloads.filter(|d| d.starts_with(&canon));
    Ok((canon, skip))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LibraryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LibraryError::Task(e.to_string()))
}

/// Parses names on every core: hunch takes ~0.2 ms a name, which matters
/// for a first scan of thousands of files.
async fn parse_names(found: Vec<Found>) -> Result<Vec<(Found, ReleaseName)>, LibraryError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = found.len().div_ceil(threads).max(1);
    let mut tasks = Vec::new();
    let mut rest = found;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk.min(rest.len()));
        let part = std::mem::replace(&mut rest, tail);
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter()
                .map(|f| {
                    let n = release::parse(&f.rel);
                    (f, n)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.map_err(|e| LibraryError::Task(e.to_string()))?);
    }
    Ok(out)
}

/// Riptide's own working files, never films of their own: pre-transcode
/// results (`{stem}.riptide.mp4`, `{stem}.riptide-hls/`, renditions of
/// the film beside them) and the hidden temp files they are written as
/// (`.{name}.part`). `rel` is `/`-separated, relative to the scan root.
fn riptide_working_file(rel: &str) -> bool {
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        let lower = part.to_ascii_lowercase();
        let last = parts.peek().is_none();
        if (part.starts_with('.') && lower.ends_with(".part"))
            || lower.ends_with(".riptide-hls")
            || (last && lower.ends_with(".riptide.mp4"))
        {
            return true;
        }
    }
    false
}

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

const EMPTY_FILE: &str = "empty file (0 bytes): an unfinished or failed download? replace it";

pub(crate) async fn scan(
    db: &Db,
    root: &Path,
    opts: &ScanOptions,
) -> Result<ScanReport, LibraryError> {
    let started = Instant::now();
    let (root, skip) = {
        let (root, opts) = (root.to_path_buf(), opts.clone());
        blocking(move || check_root(&root, &opts)).await??
    };
    let mut walked: Walk = {
        let root = root.clone();
        blocking(move || walk::walk(&root, skip.as_deref())).await?
    };
    // A pre-transcode is another rendition of a film already found, not a
    // film; a row from an older scan is marked missing like any vanished
    // file (rows are never deleted).
    walked.videos.retain(|f| !riptide_working_file(&f.rel));
    walked.subtitles.retain(|p| {
        let rel = Path::new(p)
            .strip_prefix(&root)
            .map_or(p.as_str(), |r| r.to_str().unwrap_or(p.as_str()));
        !riptide_working_file(rel)
    });
    let mut report = ScanReport {
        root: root.clone(),
        videos: walked.videos.len(),
        samples_ignored: walked.samples,
        extras_ignored: walked.extras,
        problems: walked.problems,
        ..ScanReport::default()
    };

    let known: Vec<Known> = on_pool!(db, p => sqlx::query_as(
        "SELECT id, path, size, mtime_ns, present, probe_error, movie_id FROM files"
    )
    .fetch_all(p)
    .await)?;
    let by_path: HashMap<&str, &Known> = known.iter().map(|k| (k.path.as_str(), k)).collect();

    let mut changed = Vec::new();
    let mut ids: HashMap<String, i64> = HashMap::new();
    for f in &walked.videos {
        match by_path.get(f.path.as_str()) {
            Some(k) if k.present && k.size == f.size as i64 && k.mtime_ns == f.mtime_ns => {
                report.unchanged += 1;
                ids.insert(f.path.clone(), k.id);
                if let Some(reason) = &k.probe_error {
                    report.broken.push(BrokenFile {
                        path: f.path.clone(),
                        reason: reason.clone(),
                    });
                }
            }
            _ => changed.push(f.clone()),
        }
    }
    let seen: HashSet<&str> = walked.videos.iter().map(|f| f.path.as_str()).collect();
    let missing: Vec<i64> = known
        .iter()
        .filter(|k| {
            let p = Path::new(&k.path);
            k.present
                && p.starts_with(&root)
                && !seen.contains(k.path.as_str())
                && !walked.unreadable.iter().any(|u| p.starts_with(u))
        })
        .map(|k| k.id)
        .collect();
    report.missing = missing.len();

    // Parse, then probe what the cache does not know.
    let parsed = parse_names(changed).await?;
    let mut pending = Vec::with_capacity(parsed.len());
    let mut to_probe = Vec::new();
    let cache = if parsed.is_empty() {
        HashMap::new()
    } else {
        db.probe_cache().await?
    };
    for (found, name) in parsed {
        if name.is_sample {
            report.samples_ignored += 1;
            continue;
        }
        if name.is_extra {
            report.extras_ignored += 1;
            continue;
        }
        let key: CacheKey = (file_name(&found.path), found.size as i64, found.mtime_ns);
        let probe = if found.size == 0 {
            Some(Err(EMPTY_FILE.to_string()))
        } else if let Some(hit) = cache.get(&key) {
            report.probe_cache_hits += 1;
            Some(hit.clone())
        } else {
            None
        };
        match probe {
            Some(probe) => pending.push(Pending { found, name, probe }),
            None => to_probe.push((found, name)),
        }
    }
    let mut new_cache: Vec<(CacheKey, Probed)> = Vec::new();
    let limit = opts.probe_concurrency.max(1);
    let mut running = JoinSet::new();
    let mut queue = to_probe.into_iter();
    loop {
        while running.len() < limit {
            let Some((found, name)) = queue.next() else {
                break;
            };
            running.spawn(async move {
                let path = PathBuf::from(&found.path);
                let probe = match ffmpeg::probe(&path).await {
                    Ok(info) => Ok(MediaSummary::from_probe(&info, &path)),
                    Err(e) => Err(e.to_string()),
                };
                Pending { found, name, probe }
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let p = done.map_err(|e| LibraryError::Task(e.to_string()))?;
        report.probed += 1;
        new_cache.push((
            (
                file_name(&p.found.path),
                p.found.size as i64,
                p.found.mtime_ns,
            ),
            p.probe.clone(),
        ));
        pending.push(p);
    }
    pending.sort_by(|a, b| a.found.path.cmp(&b.found.path));
    for p in &pending {
        if let Err(reason) = &p.probe {
            report.broken.push(BrokenFile {
                path: p.found.path.clone(),
                reason: reason.clone(),
            });
        }
        if by_path.contains_key(p.found.path.as_str()) {
            report.updated += 1;
        } else {
            report.added += 1;
        }
    }
    report.broken.sort_by(|a, b| a.path.cmp(&b.path));

    if !new_cache.is_empty() {
        db.cache_probes(&new_cache).await?;
    }
    let written = write_files(db, &pending, &missing).await?;
    ids.extend(written);
    // Changed files that were matched keep their movie: put its title back
    // into their search words.
    let relinked: Vec<i64> = pending
        .iter()
        .filter_map(|p| by_path.get(p.found.path.as_str()))
        .filter(|k| k.movie_id.is_some())
        .map(|k| k.id)
        .collect();
    for id in relinked {
        db.refresh_search_text(id).await?;
    }
    report.sidecar_subtitles = sync_sidecars(db, &walked.videos, &walked.subtitles, &ids).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Upserts changed files, their embedded subtitles, and marks missing ones,
/// in one transaction. Returns path → id of the upserted rows.
async fn write_files(
    db: &Db,
    pending: &[Pending],
    missing: &[i64],
) -> Result<HashMap<String, i64>, LibraryError> {
    if pending.is_empty() && missing.is_empty() {
        return Ok(HashMap::new());
    }
    let now = crate::unix_now();
    let mut ids = HashMap::new();
    on_pool!(db, p => {
        let mut tx = p.begin().await?;
        for f in pending {
            let n = &f.name;
            let ok = f.probe.as_ref().ok();
            let error = f.probe.as_ref().err();
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO files (path, size, mtime_ns, present, kind, title, year, season, \
                 episode, resolution, source, release_group, edition, language, container, \
                 video_codec, audio_codec, audio_codecs, width, height, duration, probe_error, \
                 search_text, scanned_at) \
                 VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19, $20, $21, $22, $23) \
                 ON CONFLICT (path) DO UPDATE SET size = excluded.size, \
                 mtime_ns = excluded.mtime_ns, present = TRUE, kind = excluded.kind, \
                 title = excluded.title, year = excluded.year, season = excluded.season, \
                 episode = excluded.episode, resolution = excluded.resolution, \
                 source = excluded.source, release_group = excluded.release_group, \
                 edition = excluded.edition, language = excluded.language, \
                 container = excluded.container, video_codec = excluded.video_codec, \
                 audio_codec = excluded.audio_codec, audio_codecs = excluded.audio_codecs, \
                 width = excluded.width, height = excluded.height, duration = excluded.duration, \
                 probe_error = excluded.probe_error, search_text = excluded.search_text, \
                 scanned_at = excluded.scanned_at \
                 RETURNING id",
            )
            .bind(&f.found.path)
            .bind(f.found.size as i64)
            .bind(f.found.mtime_ns)
            .bind(if n.is_episode() { "episode" } else { "movie" })
            .bind(&n.title)
            .bind(n.year)
            .bind(n.season)
            .bind(n.episode)
            .bind(&n.resolution)
            .bind(&n.source)
            .bind(&n.group)
            .bind(&n.edition)
            .bind(&n.language)
            .bind(ok.and_then(|s| s.container.clone()))
            .bind(ok.and_then(|s| s.video_codec.clone()))
            .bind(ok.and_then(|s| s.audio_codec.clone()))
            .bind(ok.map(|s| s.audio_codecs.join(",")))
            .bind(ok.and_then(|s| s.width))
            .bind(ok.and_then(|s| s.height))
            .bind(ok.and_then(|s| s.duration))
            .bind(error)
            .bind(fold(&n.title))
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            ids.insert(f.found.path.clone(), id);
            sqlx::query("DELETE FROM subtitles WHERE file_id = $1 AND source = 'embedded'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for s in ok.map(|s| s.subtitles.as_slice()).unwrap_or_default() {
                sqlx::query(
                    "INSERT INTO subtitles (file_id, source, locator, language, format, \
                     is_default, forced) VALUES ($1, 'embedded', $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(format!("stream:{}", s.index))
                .bind(&s.language)
                .bind(&s.codec)
                .bind(s.default)
                .bind(s.forced)
                .execute(&mut *tx)
                .await?;
            }
        }
        for id in missing {
            sqlx::query("UPDATE files SET present = FALSE WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    })?;
    Ok(ids)
}

/// ISO 639-1 code for a subtitle name's language tag ("en", "eng",
/// "English", "2_English").
fn subtitle_language(tag: &str) -> Option<String> {
    let t = tag.to_ascii_lowercase();
    let t = t.trim_start_matches(|c: char| c.is_ascii_digit() || c == '_' || c == ' ');
    let code = match t {
        "en" | "eng" | "english" => "en",
        "fr" | "fre" | "fra" | "french" => "fr",
        "de" | "ger" | "deu" | "german" => "de",
        "es" | "spa" | "spanish" => "es",
        "it" | "ita" | "italian" => "it",
        "pt" | "por" | "portuguese" => "pt",
        "nl" | "dut" | "nld" | "dutch" => "nl",
        "ja" | "jpn" | "japanese" => "ja",
        _ if t.len() == 2 && t.chars().all(|c| c.is_ascii_alphabetic()) => t,
        _ => return None,
    };
    Some(code.to_string())
}

/// Subtitle files that belong to a video: `Video.srt`, `Video.en.srt`,
/// `Video.en.forced.srt` beside it, or anything in a `Subs`/`Subtitles`
/// folder beside it when it is the only video there.
fn sidecars_of(
    video: &str,
    videos_in_dir: usize,
    subs: &[String],
) -> Vec<(String, Option<String>, String)> {
    let (dir, file) = video.rsplit_once('/').unwrap_or(("", video));
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    let mut out = Vec::new();
    for s in subs {
        let (sdir, sfile) = s.rsplit_once('/').unwrap_or(("", s));
        let Some((sstem, ext)) = sfile.rsplit_once('.') else {
            continue;
        };
        let format = ext.to_ascii_lowercase();
        if sdir == dir {
            if let Some(rest) = sstem.strip_prefix(stem) {
                if rest.is_empty() {
                    out.push((s.clone(), None, format));
                } else if let Some(tags) = rest.strip_prefix('.') {
                    let lang = tags.split('.').find_map(subtitle_language);
                    out.push((s.clone(), lang, format));
                }
            }
        } else if let Some((parent, sub_dir)) = sdir.rsplit_once('/')
            && videos_in_dir == 1
        {
            let sub_dir = sub_dir.to_ascii_lowercase();
            if parent == dir && (sub_dir == "subs" || sub_dir == "subtitles") {
                out.push((s.clone(), subtitle_language(sstem), format));
            }
        }
    }
    out
}

/// Makes the sidecar rows of the found videos match the subtitle files on
/// disk. Returns how many sidecars the videos have.
async fn sync_sidecars(
    db: &Db,
    videos: &[Found],
    subs: &[String],
    ids: &HashMap<String, i64>,
) -> Result<usize, LibraryError> {
    let mut per_dir: HashMap<&str, usize> = HashMap::new();
    for v in videos {
        *per_dir
            .entry(v.path.rsplit_once('/').map_or("", |(d, _)| d))
            .or_default() += 1;
    }
    let mut want: HashMap<(i64, String), (Option<String>, String)> = HashMap::new();
    for v in videos {
        let Some(&id) = ids.get(&v.path) else {
            continue;
        };
        let n = per_dir[v.path.rsplit_once('/').map_or("", |(d, _)| d)];
        for (path, lang, format) in sidecars_of(&v.path, n, subs) {
            want.insert((id, path), (lang, format));
        }
    }
    let have: Vec<(i64, i64, String)> = on_pool!(db, p => sqlx::query_as(
        "SELECT id, file_id, locator FROM subtitles WHERE source = 'sidecar'"
    )
    .fetch_all(p)
    .await)?;
    let video_ids: HashSet<i64> = ids.values().copied().collect();
    let have_keys: HashSet<(i64, String)> = have.iter().map(|(_, f, l)| (*f, l.clone())).collect();
    let stale: Vec<i64> = have
        .iter()
        .filter(|(_, f, l)| video_ids.contains(f) && !want.contains_key(&(*f, l.clone())))
        .map(|(id, _, _)| *id)
        .collect();
    let new: Vec<_> = want
        .iter()
        .filter(|(k, _)| !have_keys.contains(*k))
        .collect();
    if !stale.is_empty() || !new.is_empty() {
        on_pool!(db, p => {
            let mut tx = p.begin().await?;
            for id in &stale {
                sqlx::query("DELETE FROM subtitles WHERE id = $1").bind(id).execute(&mut *tx).await?;
            }
            for ((file_id, path), (lang, format)) in &new {
                sqlx::query(
                    "INSERT INTO subtitles (file_id, source, locator, language, format) \
                     VALUES ($1, 'sidecar', $2, $3, $4) ON CONFLICT (file_id, locator) DO NOTHING",
                )
                .bind(file_id)
                .bind(path)
                .bind(lang)
                .bind(format)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        })?;
    }
    Ok(want.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn riptide_working_files_are_not_films() {
        for rel in [
            "Se7en (1995)/Se7en.riptide.mp4",
            "Se7en.RIPTIDE.MP4",
            "Se7en (1995)/.Se7en.riptide.mp4.part",
            ".Se7en.mkv.part",
            "Se7en (1995)/Se7en.riptide-hls/init.mp4",
            "Se7en (1995)/Se7en.riptide-hls/.init.mp4.part",
            "Se7en (1995)/Se7en.riptide-hls/sub2.vtt",
        ] {
            assert!(riptide_working_file(rel), "{rel}");
        }
        for rel in [
            "Se7en (1995)/Se7en.mkv",
            "Se7en (1995)/Se7en.mp4",
            "Riptide (2017)/Riptide.mp4",
            "The.riptide.mp4.Collection/Film.mkv",
            "Film.part.mkv",
        ] {
            assert!(!riptide_working_file(rel), "{rel}");
        }
    }

    /// A scan over a film with its pre-transcode, a pre-transcode being
    /// written and an HLS rendition finds the film alone.
    #[tokio::test]
    async fn scan_skips_pre_transcodes_and_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("media");
        let film = root.join("Se7en (1995)");
        std::fs::create_dir_all(film.join("Se7en.riptide-hls")).unwrap();
        for name in [
            "Se7en.mkv",
            "Se7en.riptide.mp4",
            ".Se7en.riptide.mp4.part",
            "Se7en.riptide-hls/init.mp4",
        ] {
            // Not real video: the film is "broken" but still found.
            std::fs::write(film.join(name), b"not a video").unwrap();
        }
        let db = Db::open(&tmp.path().join("db/riptide.db").to_string_lossy())
            .await
            .unwrap();
        let report = scan(&db, &root, &ScanOptions::default()).await.unwrap();
        assert_eq!(report.videos, 1, "{report:?}");
        let paths: Vec<(String,)> = on_pool!(&db, p => sqlx::query_as("SELECT path FROM files")
            .fetch_all(p)
            .await)
        .unwrap();
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert!(paths[0].0.ends_with("/Se7en.mkv"), "{paths:?}");
    }

    #[test]
    fn sidecar_rules() {
        let subs = vec![
            "/m/The.Matrix/The.Matrix.en.srt".to_string(),
            "/m/The.Matrix/The.Matrix.fr.srt".to_string(),
            "/m/The.Matrix/The.Matrix.vtt".to_string(),
            "/m/The.Matrix/Other.en.srt".to_string(),
            "/m/Thing/Subs/2_English.srt".to_string(),
        ];
        let got = sidecars_of("/m/The.Matrix/The.Matrix.mp4", 1, &subs);
        assert_eq!(
            got,
            [
                (
                    "/m/The.Matrix/The.Matrix.en.srt".into(),
                    Some("en".into()),
                    "srt".into()
                ),
                (
                    "/m/The.Matrix/The.Matrix.fr.srt".into(),
                    Some("fr".into()),
                    "srt".into()
                ),
                ("/m/The.Matrix/The.Matrix.vtt".into(), None, "vtt".into()),
            ]
        );
        let got = sidecars_of("/m/Thing/Thing.mkv", 1, &subs);
        assert_eq!(
            got,
            [(
                "/m/Thing/Subs/2_English.srt".into(),
                Some("en".into()),
                "srt".into()
            )]
        );
        assert!(sidecars_of("/m/Thing/Thing.mkv", 2, &subs).is_empty());
    }
}
