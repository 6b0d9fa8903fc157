//! The torrent manager of `riptide serve`: adds, pauses, resumes and
//! removes torrents, remembers them across restarts, and imports finished
//! films into the library.
//!
//! Where things live (media root = `DATA_DIR/media` by default):
//!
//! - `downloads/{info_hash}/` while a torrent downloads;
//! - `library/{n}/` once imported (`n` is allocated from the
//!   [`StorageManifest`]'s library set: a film that is not matched to TMDB
//!   has no movie id yet, and folder names must never change);
//! - `DATA_DIR/torrents/{info_hash}.torrent` or `.magnet`: what the user
//!   added, so a restart re-adds the torrent with its trackers;
//! - the `torrents` table: state and save path.
//!
//! On completion: checkpoint → state `importing` (with the target folder,
//! so a crash resumes the same import) → stop the torrent → import each
//! file (`piece_store::import`: reflink, else hard link, else move) → add
//! the torrent again with its folder in the library (resume data makes
//! that instant; a file whose mtime changed is re-hashed) → once it seeds
//! from there, delete what is left under `downloads/` → scan the folder
//! into the library → queue a pre-transcode when the household's devices
//! cannot play it directly.
//!
//! Operations on one torrent are serialised by a per-torrent busy flag: a
//! remove during an import is refused with "try again", never interleaved.

use bt_engine::{
    AddTorrent, EngineError, Session, TorrentHandle, TorrentSource, TorrentStats, TorrentStatus,
};
use bt_proto::{InfoHash, Magnet, Metainfo};
use media_library::Library;
use media_library::torrents::TorrentRecord;
use parking_lot::Mutex;
use piece_store::StorageManifest;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use streaming::pretranscode::PreTranscoder;
use tokio_util::sync::CancellationToken;

use super::unix_now;

/// What a user hands over.
pub enum NewTorrent {
    Magnet(String),
    File(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("nothing to add: paste a magnet link or choose a .torrent file")]
    Empty,
    #[error("that is not a magnet link: it must start with `magnet:?xt=urn:btih:`")]
    NotAMagnet,
    #[error("invalid magnet link: {0}")]
    Magnet(String),
    #[error("the file is not a valid .torrent: {0}")]
    Torrent(String),
    #[error(
        "the .torrent is {0} bytes; torrent files are never that large — is it the right file?"
    )]
    TooLarge(usize),
    #[error("“{0}” is already in the list of downloads")]
    Duplicate(String),
    #[error("cannot add the torrent: {0}")]
    Engine(String),
    #[error(
        "cannot save the torrent under {path}: {error}; check the disk and permissions of the data folder"
    )]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no torrent with info-hash {0}; it may have been removed already")]
    NotFound(String),
    #[error("“{0}” is being imported into the library; try again in a moment")]
    Busy(String),
    #[error("{0}")]
    Failed(String),
}

/// A torrent as the pages and the API show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TorrentView {
    /// 40 lower-case hex digits.
    pub info_hash: String,
    pub name: String,
    /// `fetching metadata`, `checking`, `downloading`, `seeding`, `paused`,
    /// `importing` or `error`.
    pub state: String,
    /// 0.0 – 1.0.
    pub progress: f64,
    pub total_bytes: u64,
    pub verified_bytes: u64,
    /// Bytes per second.
    pub download_rate: u64,
    pub upload_rate: u64,
    pub peers: usize,
    pub seeds: usize,
    /// Seconds until complete, when known.
    pub eta_secs: Option<u64>,
    pub error: Option<String>,
    /// In `library/` (imported) rather than `downloads/`.
    pub imported: bool,
    pub added_at: i64,
}

struct Inner {
    manifest: StorageManifest,
    /// Torrents with an import or removal in progress.
    busy: HashSet<InfoHash>,
}

pub struct Downloads {
    session: Session,
    library: Library,
    media_root: PathBuf,
    sources: PathBuf,
    pretranscoder: Option<PreTranscoder>,
    inner: Mutex<Inner>,
    /// Serialises manifest writes (done on the blocking pool).
    manifest_write: tokio::sync::Mutex<()>,
    /// Watchers of every torrent end with it.
    cancel: CancellationToken,
    records: Mutex<HashMap<InfoHash, TorrentRecord>>,
}

fn hex_of(ih: &InfoHash) -> String {
    ih.to_hex()
}

pub fn parse_info_hash(s: &str) -> Option<InfoHash> {
    (s.len() == 40)
        .then(|| InfoHash::from_hex_or_base32(s).ok())
        .flatten()
}

impl Downloads {
    pub fn new(
        session: Session,
        library: Library,
        media_root: PathBuf,
        sources: PathBuf,
        manifest: StorageManifest,
        pretranscoder: Option<PreTranscoder>,
    ) -> anyhow::Result<Arc<Downloads>> {
        std::fs::create_dir_all(&sources)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", sources.display()))?;
        Ok(Arc::new(Downloads {
            session,
            library,
            media_root,
            sources,
            pretranscoder,
            inner: Mutex::new(Inner {
                manifest,
                busy: HashSet::new(),
            }),
            manifest_write: tokio::sync::Mutex::new(()),
            cancel: CancellationToken::new(),
            records: Mutex::new(HashMap::new()),
        }))
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    fn downloads_dir(&self, ih: &InfoHash) -> PathBuf {
        StorageManifest::download_dir(&self.media_root, &hex_of(ih))
    }

    fn is_library_path(&self, p: &Path) -> bool {
        p.starts_with(self.media_root.join(piece_store::manifest::LIBRARY_DIR))
    }

    /// Parses what the user gave; nothing is stored yet.
    pub fn parse(
        input: NewTorrent,
        max_file: usize,
    ) -> Result<(TorrentSource, InfoHash, String, SavedSource), AddError> {
        match input {
            NewTorrent::Magnet(text) => {
                let text = text.trim();
                if text.is_empty() {
                    return Err(AddError::Empty);
                }
                if !text.starts_with("magnet:") {
                    return Err(AddError::NotAMagnet);
                }
                let m = Magnet::parse(text).map_err(|e| AddError::Magnet(e.to_string()))?;
                let name = m
                    .display_name
                    .clone()
                    .unwrap_or_else(|| m.info_hash.to_hex());
                let ih = m.info_hash;
                Ok((
                    TorrentSource::Magnet(m),
                    ih,
                    name,
                    SavedSource::Magnet(text.to_string()),
                ))
            }
            NewTorrent::File(bytes) => {
                if bytes.is_empty() {
                    return Err(AddError::Empty);
                }
                if bytes.len() > max_file {
                    return Err(AddError::TooLarge(bytes.len()));
                }
                let m =
                    Metainfo::from_bytes(&bytes).map_err(|e| AddError::Torrent(e.to_string()))?;
                piece_store::Layout::from_info(&m.info)
                    .map_err(|e| AddError::Torrent(e.to_string()))?;
                let ih = m.info_hash;
                let name = m.info.name_lossy();
                Ok((
                    TorrentSource::Metainfo(Box::new(m)),
                    ih,
                    name,
                    SavedSource::Torrent(bytes),
                ))
            }
        }
    }

    /// Adds a torrent: remembers its source, records it, starts it.
    pub async fn add(
        self: &Arc<Self>,
        input: NewTorrent,
        max_file: usize,
        paused: bool,
    ) -> Result<TorrentView, AddError> {
        let (source, ih, name, saved) = Self::parse(input, max_file)?;
        if self.session.torrent(&ih).is_some() || self.records.lock().contains_key(&ih) {
            return Err(AddError::Duplicate(name));
        }
        let dir = self.downloads_dir(&ih);
        let src_path = saved.path(&self.sources, &ih);
        {
            let (dir, src_path, saved) = (dir.clone(), src_path.clone(), saved.clone());
            tokio::task::spawn_blocking(move || -> Result<(), AddError> {
                std::fs::create_dir_all(&dir).map_err(|error| AddError::Io {
                    path: dir.clone(),
                    error,
                })?;
                write_synced(&src_path, saved.bytes()).map_err(|error| AddError::Io {
                    path: src_path.clone(),
                    error,
                })
            })
            .await
            .map_err(|e| AddError::Engine(e.to_string()))??;
        }
        let handle = match self
            .session
            .add_torrent(AddTorrent {
                source,
                download_dir: dir.clone(),
                peers: Vec::new(),
                paused,
            })
            .await
        {
            Ok(h) => h,
            Err(EngineError::Duplicate(_)) => return Err(AddError::Duplicate(name)),
            Err(e) => {
                let _ = std::fs::remove_file(&src_path);
                return Err(AddError::Engine(e.to_string()));
            }
        };
        let rec = TorrentRecord {
            info_hash: hex_of(&ih),
            name: name.clone(),
            state: if paused { "paused" } else { "downloading" }.into(),
            save_path: dir.to_string_lossy().into_owned(),
            total_bytes: 0,
            added_at: unix_now(),
            completed_at: None,
            movie_id: None,
        };
        if let Err(e) = self.library.db().upsert_torrent(&rec).await {
            tracing::warn!("cannot record torrent {name}: {e}");
        }
        self.records.lock().insert(ih, rec);
        self.note_download(ih).await;
        self.watch(handle.clone());
        Ok(self.view(&handle))
    }

    async fn note_download(&self, ih: InfoHash) {
        self.edit_manifest(|m| {
            m.layout.downloads.insert(hex_of(&ih));
        })
        .await;
    }

    async fn edit_manifest(&self, f: impl FnOnce(&mut StorageManifest)) {
        let _w = self.manifest_write.lock().await;
        let snapshot = {
            let mut inner = self.inner.lock();
            f(&mut inner.manifest);
            inner.manifest.clone()
        };
        let root = self.media_root.clone();
        match tokio::task::spawn_blocking(move || snapshot.save(&root)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot write the storage manifest: {e}"),
            Err(e) => tracing::warn!("manifest task failed: {e}"),
        }
    }

    /// Re-adds the torrents of the previous run.
    pub async fn restore(self: &Arc<Self>) {
        let records = match self.library.db().torrents().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot list the torrents of the last run: {e}");
                return;
            }
        };
        for rec in records {
            let Some(ih) = parse_info_hash(&rec.info_hash) else {
                continue;
            };
            let saved = SavedSource::load(&self.sources, &ih).await;
            let Some(saved) = saved else {
                tracing::warn!(name = %rec.name, "the .torrent/magnet of this torrent is missing from {}; add it again", self.sources.display());
                continue;
            };
            let input = match &saved {
                SavedSource::Magnet(m) => NewTorrent::Magnet(m.clone()),
                SavedSource::Torrent(b) => NewTorrent::File(b.clone()),
            };
            let Ok((source, _, _, _)) = Self::parse(input, usize::MAX) else {
                tracing::warn!(name = %rec.name, "the saved source of this torrent no longer parses; add it again");
                continue;
            };
            self.records.lock().insert(ih, rec.clone());
            if rec.state == "importing" {
                let me = self.clone();
                let target = PathBuf::from(&rec.save_path);
                tokio::spawn(async move { me.finish_import(ih, source, target, false).await });
                continue;
            }
            match self
                .session
                .add_torrent(AddTorrent {
                    source,
                    download_dir: PathBuf::from(&rec.save_path),
                    peers: Vec::new(),
                    paused: rec.state == "paused",
                })
                .await
            {
                Ok(h) => {
                    if !self.is_library_path(Path::new(&rec.save_path)) {
                        self.watch(h);
                    }
                }
                Err(e) => tracing::warn!(name = %rec.name, "cannot resume torrent: {e}"),
            }
        }
    }

    /// Imports the torrent once it completes.
    fn watch(self: &Arc<Self>, handle: TorrentHandle) {
        let me = self.clone();
        let cancel = self.cancel.child_token();
        tokio::spawn(async move {
            // Cancel-safety: wait_complete only reads a watch channel.
            let done = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = handle.wait_complete() => r,
            };
            if done.is_ok() {
                me.import(handle).await;
            }
        });
    }

    async fn import(self: &Arc<Self>, handle: TorrentHandle) {
        let ih = handle.info_hash();
        if !self.inner.lock().busy.insert(ih) {
            return;
        }
        let target = {
            let mut inner = self.inner.lock();
            let n = inner
                .manifest
                .layout
                .library
                .iter()
                .max()
                .copied()
                .unwrap_or(0)
                + 1;
            inner.manifest.layout.library.insert(n);
            StorageManifest::library_dir(&self.media_root, n)
        };
        self.edit_manifest(|_| {}).await;
        handle.checkpoint().await;
        let stats = handle.stats();
        let rec = self.update_record(&ih, |r| {
            r.state = "importing".into();
            r.save_path = target.to_string_lossy().into_owned();
            r.total_bytes = stats.total_bytes as i64;
            r.completed_at = Some(unix_now());
        });
        if let Some(rec) = rec {
            let _ = self.library.db().upsert_torrent(&rec).await;
        }
        let saved = SavedSource::load(&self.sources, &ih).await;
        let source = saved.and_then(|s| {
            let input = match s {
                SavedSource::Magnet(m) => NewTorrent::Magnet(m),
                SavedSource::Torrent(b) => NewTorrent::File(b),
            };
            Self::parse(input, usize::MAX).ok().map(|p| p.0)
        });
        let Some(source) = source else {
            tracing::error!("cannot import {}: its saved source is missing", stats.name);
            self.inner.lock().busy.remove(&ih);
            return;
        };
        // Stop seeding from downloads/ (writes final resume data). The
        // busy flag stays set: `finish_import` takes it over.
        let _ = self.session.remove_torrent(&ih, false).await;
        self.finish_import(ih, source, target, true).await;
    }

    /// Moves the files to `target`, re-adds the torrent there, cleans up,
    /// scans. Safe to run again after a crash at any point.
    async fn finish_import(
        self: &Arc<Self>,
        ih: InfoHash,
        source: TorrentSource,
        target: PathBuf,
        claimed: bool,
    ) {
        if !claimed && !self.inner.lock().busy.insert(ih) {
            return;
        }
        let from = self.downloads_dir(&ih);
        let result = {
            let (from, target) = (from.clone(), target.clone());
            tokio::task::spawn_blocking(move || import_tree(&from, &target)).await
        };
        match result {
            Ok(Ok(n)) => {
                tracing::info!(files = n, to = %target.display(), "imported into the library")
            }
            Ok(Err(e)) => tracing::error!(
                "import into {} failed: {e}; the download stays where it is",
                target.display()
            ),
            Err(e) => tracing::error!("import task failed: {e}"),
        }
        let added = self
            .session
            .add_torrent(AddTorrent {
                source,
                download_dir: target.clone(),
                peers: Vec::new(),
                paused: false,
            })
            .await;
        let seeding = match added {
            Ok(h) => {
                let ok = tokio::time::timeout(Duration::from_secs(600), h.wait_complete()).await;
                matches!(ok, Ok(Ok(())))
            }
            Err(e) => {
                tracing::error!("cannot seed from the library: {e}");
                false
            }
        };
        if seeding {
            // What is left is a reflink or hard-link twin (or nothing, after
            // a move): the library copy is verified, so this loses nothing.
            let f = from.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&f)).await;
        }
        let rec = self.update_record(&ih, |r| {
            r.state = if seeding { "seeding" } else { "error" }.into();
            r.save_path = target.to_string_lossy().into_owned();
        });
        if let Some(rec) = rec {
            let _ = self.library.db().upsert_torrent(&rec).await;
        }
        let hex = hex_of(&ih);
        self.edit_manifest(|m| {
            m.layout.downloads.remove(&hex);
        })
        .await;
        self.inner.lock().busy.remove(&ih);
        match self.library.scan(&target).await {
            Ok(report) => {
                tracing::info!(
                    added = report.added,
                    broken = report.broken.len(),
                    "library scan of the import"
                );
                for b in &report.broken {
                    tracing::warn!(path = %b.path, "not playable: {}", b.reason);
                }
            }
            Err(e) => tracing::error!("cannot scan {}: {e}", target.display()),
        }
        if let Some(pt) = &self.pretranscoder {
            let t = target.clone();
            let films = tokio::task::spawn_blocking(move || video_files(&t))
                .await
                .unwrap_or_default();
            for film in films {
                let req = streaming::pretranscode::Request {
                    input: ffmpeg::Input::File(film.clone()),
                    film,
                    priority: 0,
                };
                if let Err(e) = pt.submit(req) {
                    tracing::warn!("pre-transcode not queued: {e}");
                }
            }
        }
    }

    fn update_record(
        &self,
        ih: &InfoHash,
        f: impl FnOnce(&mut TorrentRecord),
    ) -> Option<TorrentRecord> {
        let mut recs = self.records.lock();
        let r = recs.get_mut(ih)?;
        f(r);
        Some(r.clone())
    }

    fn handle(&self, info_hash: &str) -> Result<(InfoHash, Option<TorrentHandle>), ActionError> {
        let ih = parse_info_hash(info_hash)
            .ok_or_else(|| ActionError::NotFound(info_hash.to_string()))?;
        let h = self.session.torrent(&ih);
        if h.is_none() && !self.records.lock().contains_key(&ih) {
            return Err(ActionError::NotFound(info_hash.to_string()));
        }
        Ok((ih, h))
    }

    fn check_idle(&self, ih: &InfoHash) -> Result<(), ActionError> {
        if self.inner.lock().busy.contains(ih) {
            let name = self
                .records
                .lock()
                .get(ih)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            return Err(ActionError::Busy(name));
        }
        Ok(())
    }

    pub async fn pause(&self, info_hash: &str) -> Result<TorrentView, ActionError> {
        self.set_paused(info_hash, true).await
    }

    pub async fn resume(&self, info_hash: &str) -> Result<TorrentView, ActionError> {
        self.set_paused(info_hash, false).await
    }

    async fn set_paused(&self, info_hash: &str, paused: bool) -> Result<TorrentView, ActionError> {
        let (ih, h) = self.handle(info_hash)?;
        self.check_idle(&ih)?;
        let h = h.ok_or_else(|| ActionError::Busy(info_hash.to_string()))?;
        if paused {
            h.pause();
        } else {
            h.resume();
        }
        let rec = self.update_record(&ih, |r| {
            r.state = if paused { "paused" } else { "downloading" }.into();
        });
        if let Some(rec) = rec {
            let _ = self.library.db().upsert_torrent(&rec).await;
        }
        Ok(self.view(&h))
    }

    /// Removes a torrent; with `delete_data` its files too (in
    /// `downloads/`, or the imported copy in `library/`).
    pub async fn remove(&self, info_hash: &str, delete_data: bool) -> Result<(), ActionError> {
        let (ih, h) = self.handle(info_hash)?;
        if !self.inner.lock().busy.insert(ih) {
            let name = self
                .records
                .lock()
                .get(&ih)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            return Err(ActionError::Busy(name));
        }
        let rec = self.records.lock().get(&ih).cloned();
        let dir = rec
            .as_ref()
            .map(|r| PathBuf::from(&r.save_path))
            .unwrap_or_else(|| self.downloads_dir(&ih));
        if h.is_some()
            && let Err(e) = self.session.remove_torrent(&ih, delete_data).await
        {
            self.inner.lock().busy.remove(&ih);
            return Err(ActionError::Failed(e.to_string()));
        }
        let _ = self.library.db().remove_torrent(&hex_of(&ih)).await;
        self.records.lock().remove(&ih);
        let src = self.sources.clone();
        let delete_dir = delete_data.then(|| dir.clone());
        let gone = tokio::task::spawn_blocking(move || {
            for ext in ["torrent", "magnet"] {
                let _ = std::fs::remove_file(src.join(format!("{}.{ext}", hex_of(&ih))));
            }
            if let Some(d) = delete_dir {
                // The engine deleted the torrent's files; folders it made
                // remain. Remove them only when nothing else is inside.
                remove_empty_dirs(&d);
                return !d.exists();
            }
            false
        })
        .await
        .unwrap_or(false);
        let hex = hex_of(&ih);
        let lib_id = dir
            .strip_prefix(self.media_root.join(piece_store::manifest::LIBRARY_DIR))
            .ok()
            .and_then(|p| p.to_str())
            .and_then(|s| s.parse::<i64>().ok());
        self.edit_manifest(|m| {
            m.layout.downloads.remove(&hex);
            if gone && let Some(id) = lib_id {
                m.layout.library.remove(&id);
            }
        })
        .await;
        if delete_data && lib_id.is_some() && dir.parent().is_some() {
            // Marks the film's rows as not present (progress is kept).
            let parent = dir.parent().expect("checked").to_path_buf();
            let _ = self.library.scan(&parent).await;
        }
        self.inner.lock().busy.remove(&ih);
        Ok(())
    }

    pub fn view(&self, h: &TorrentHandle) -> TorrentView {
        let s = h.stats();
        let ih = h.info_hash();
        let rec = self.records.lock().get(&ih).cloned();
        let busy = self.inner.lock().busy.contains(&ih);
        view_of(
            &s,
            rec.as_ref(),
            busy,
            self.is_library_path(&s.download_dir),
        )
    }

    /// Every torrent: running ones, and those being imported.
    pub fn list(&self) -> Vec<TorrentView> {
        let mut out: Vec<TorrentView> = self
            .session
            .torrents()
            .iter()
            .map(|h| self.view(h))
            .collect();
        let running: HashSet<String> = out.iter().map(|v| v.info_hash.clone()).collect();
        for rec in self.records.lock().values() {
            if !running.contains(&rec.info_hash) {
                out.push(TorrentView {
                    info_hash: rec.info_hash.clone(),
                    name: rec.name.clone(),
                    state: if rec.state == "importing" {
                        "importing".into()
                    } else {
                        rec.state.clone()
                    },
                    progress: if rec.completed_at.is_some() { 1.0 } else { 0.0 },
                    total_bytes: rec.total_bytes.max(0) as u64,
                    verified_bytes: if rec.completed_at.is_some() {
                        rec.total_bytes.max(0) as u64
                    } else {
                        0
                    },
                    download_rate: 0,
                    upload_rate: 0,
                    peers: 0,
                    seeds: 0,
                    eta_secs: None,
                    error: None,
                    imported: self.is_library_path(Path::new(&rec.save_path)),
                    added_at: rec.added_at,
                });
            }
        }
        out.sort_by(|a, b| (a.added_at, &a.info_hash).cmp(&(b.added_at, &b.info_hash)));
        out
    }

    pub fn get(&self, info_hash: &str) -> Option<TorrentView> {
        let ih = parse_info_hash(info_hash)?;
        let hex = hex_of(&ih);
        self.list().into_iter().find(|v| v.info_hash == hex)
    }

    pub fn torrent(&self, info_hash: &str) -> Option<TorrentHandle> {
        parse_info_hash(info_hash).and_then(|ih| self.session.torrent(&ih))
    }

    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.session.shutdown().await;
    }
}

fn view_of(
    s: &TorrentStats,
    rec: Option<&TorrentRecord>,
    busy: bool,
    imported: bool,
) -> TorrentView {
    let state = if busy {
        "importing"
    } else {
        match s.status {
            TorrentStatus::FetchingMetadata => "fetching metadata",
            TorrentStatus::Checking => "checking",
            TorrentStatus::Downloading => "downloading",
            TorrentStatus::Seeding => "seeding",
            TorrentStatus::Paused => "paused",
            TorrentStatus::Error => "error",
        }
    };
    TorrentView {
        info_hash: s.info_hash.to_hex(),
        name: s.name.clone(),
        state: state.into(),
        progress: s.progress(),
        total_bytes: s.total_bytes,
        verified_bytes: s.verified_bytes,
        download_rate: s.download_rate,
        upload_rate: s.upload_rate,
        peers: s.peers,
        seeds: s.seeds,
        eta_secs: s.eta.map(|d| d.as_secs()),
        error: s.error.clone(),
        imported,
        added_at: rec.map_or(0, |r| r.added_at),
    }
}

/// The user's magnet link or .torrent bytes, kept in `DATA_DIR/torrents/`.
#[derive(Clone)]
pub enum SavedSource {
    Magnet(String),
    Torrent(Vec<u8>),
}

impl SavedSource {
    fn path(&self, dir: &Path, ih: &InfoHash) -> PathBuf {
        let ext = match self {
            SavedSource::Magnet(_) => "magnet",
            SavedSource::Torrent(_) => "torrent",
        };
        dir.join(format!("{}.{ext}", ih.to_hex()))
    }

    fn bytes(&self) -> &[u8] {
        match self {
            SavedSource::Magnet(m) => m.as_bytes(),
            SavedSource::Torrent(b) => b,
        }
    }

    async fn load(dir: &Path, ih: &InfoHash) -> Option<SavedSource> {
        let t = dir.join(format!("{}.torrent", ih.to_hex()));
        let m = dir.join(format!("{}.magnet", ih.to_hex()));
        if let Ok(b) = tokio::fs::read(&t).await {
            return Some(SavedSource::Torrent(b));
        }
        tokio::fs::read_to_string(&m)
            .await
            .ok()
            .map(SavedSource::Magnet)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("part");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Imports every file under `from` to the same relative path under `to`.
/// Files already at the destination (a retried import) count as done.
fn import_tree(from: &Path, to: &Path) -> Result<usize, String> {
    let mut n = 0;
    let mut stack = vec![from.to_path_buf()];
    if !from.exists() {
        // Moved already by an import that was interrupted after it.
        return if to.exists() {
            Ok(0)
        } else {
            Err(format!("{} does not exist", from.display()))
        };
    }
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            let p = e.path();
            let ft = e.file_type().map_err(|e| e.to_string())?;
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p.strip_prefix(from).map_err(|e| e.to_string())?;
                piece_store::import(&p, &to.join(rel)).map_err(|e| e.to_string())?;
                n += 1;
            }
        }
    }
    Ok(n)
}

fn remove_empty_dirs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn video_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if streaming::mime::is_video(&p) && !p.to_string_lossy().contains(".riptide") {
                out.push(p);
            }
        }
    }
    out
}
