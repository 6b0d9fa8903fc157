//! On-demand HLS: a master playlist, one fMP4 media playlist and WebVTT
//! subtitle renditions per session, produced by ffmpeg ahead of the
//! player.
//!
//! Two modes, chosen by the [`Decision`]:
//!
//! - **encode** (video is transcoded): the media playlist is written up
//!   front from the duration, with a segment every `segment_secs`. ffmpeg
//!   forces a keyframe exactly at each boundary and cuts at every
//!   keyframe, so segment `N` is always the same time range. A request
//!   for a segment far from what ffmpeg is producing (a seek) restarts
//!   ffmpeg at that segment (`-ss` to its start, `-start_number N`,
//!   original timestamps kept with `-copyts`, and written into each
//!   fragment's `tfdt` with `movflags=+frag_discont`, so a restarted
//!   segment carries the same times as an uninterrupted run's).
//! - **copy** (remux or audio-only transcode): keyframes are where the
//!   source has them, so ffmpeg segments the whole file in one run (at
//!   disk speed) and its own playlist, which has the true durations, is
//!   served as it grows.
//!
//! A session that no request touched for `idle_timeout` is ended: its
//! ffmpeg is killed and its folder removed. Every name in a URL is
//! checked against a strict pattern before it touches the file system.

use crate::decision::{Decision, DecisionKind, Options, decide};
use crate::profiles::Profile;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ffmpeg::job::{HLS_INIT, HLS_PLAYLIST, hls_segment_name};
use ffmpeg::{
    AudioCodec, AudioOut, AudioStream, Input, MediaInfo, Output, Pool, Priority, Progress,
    RunError, VideoCodec, VideoOut, VideoStream,
};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct HlsConfig {
    /// Sessions write their segments under this folder.
    pub root: PathBuf,
    pub segment_secs: f64,
    /// A session nobody requested anything from for this long is ended.
    pub idle_timeout: Duration,
    /// A request more than this many segments ahead of ffmpeg restarts it
    /// there (closer ones are just waited for).
    pub restart_gap: u32,
    /// How long one request waits for its segment.
    pub segment_wait: Duration,
    pub max_sessions: usize,
    pub options: Options,
}

impl HlsConfig {
    pub fn new(root: PathBuf) -> HlsConfig {
        HlsConfig {
            root,
            segment_secs: 3.0,
            idle_timeout: Duration::from_secs(30),
            restart_gap: 3,
            segment_wait: Duration::from_secs(60),
            max_sessions: 8,
            options: Options::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    #[error("cannot plan playback: {0}")]
    Plan(#[from] crate::decision::PlanError),
    #[error("{0} transcoding sessions are running; stop one (close a player) and retry")]
    TooManySessions(usize),
    #[error("cannot create the session folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no such HLS session (it ended after being idle); reload the master playlist")]
    NoSession,
    #[error("no such file in an HLS session")]
    NoFile,
    #[error("segment {0} was not ready in time; the transcoder is too slow or stuck")]
    Timeout(u32),
    #[error("the transcoder failed: {0}")]
    Transcode(String),
}

impl IntoResponse for HlsError {
    fn into_response(self) -> Response {
        let status = match &self {
            HlsError::NoSession | HlsError::NoFile => StatusCode::NOT_FOUND,
            HlsError::TooManySessions(_) => StatusCode::SERVICE_UNAVAILABLE,
            HlsError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.to_string()).into_response()
    }
}

/// A name a client may request inside a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsName {
    Master,
    Media,
    Init,
    Segment(u32),
    SubtitlePlaylist(u32),
    SubtitleFile(u32),
}

impl HlsName {
    /// Strict: `master.m3u8`, `video.m3u8`, `init.mp4`, `seg{0-999999}.m4s`,
    /// `sub{0-999}.m3u8`, `sub{0-999}.vtt`; nothing else.
    pub fn parse(name: &str) -> Option<HlsName> {
        fn num(s: &str, max_digits: usize) -> Option<u32> {
            let ok = !s.is_empty()
                && s.len() <= max_digits
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            ok.then(|| s.parse().ok()).flatten()
        }
        match name {
            "master.m3u8" => return Some(HlsName::Master),
            "video.m3u8" => return Some(HlsName::Media),
            "init.mp4" => return Some(HlsName::Init),
            _ => {}
        }
        if let Some(n) = name
            .strip_prefix("seg")
            .and_then(|r| r.strip_suffix(".m4s"))
        {
            return num(n, 6).map(HlsName::Segment);
        }
        if let Some(r) = name.strip_prefix("sub") {
            if let Some(n) = r.strip_suffix(".m3u8") {
                return num(n, 3).map(HlsName::SubtitlePlaylist);
            }
            if let Some(n) = r.strip_suffix(".vtt") {
                return num(n, 3).map(HlsName::SubtitleFile);
            }
        }
        None
    }
}

/// Session ids are 32 lower-case hex digits.
pub fn valid_session_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[derive(Clone)]
pub struct HlsService {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: HlsConfig,
    pool: Pool,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    shutdown: CancellationToken,
}

/// What [`HlsService::start`] returns to the client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: String,
    /// Relative to where [`router`] is mounted: `/hls/{id}/master.m3u8`.
    pub master: String,
    pub decision: Decision,
}

enum Mode {
    /// Segment `n` covers `bounds[n]..bounds[n + 1]`.
    Encode {
        bounds: Vec<f64>,
    },
    Copy,
}

struct SubTrack {
    stream: u32,
    name: String,
    language: Option<String>,
    default: bool,
    forced: bool,
}

struct Run {
    start: u32,
    cancel: CancellationToken,
    /// `Some(Ok)` when ffmpeg finished, `Some(Err)` when it failed.
    result: Arc<Mutex<Option<Result<(), String>>>>,
}

struct Session {
    dir: PathBuf,
    input: Input,
    decision: Decision,
    mode: Mode,
    codecs: String,
    bandwidth: u64,
    resolution: Option<(u32, u32)>,
    subs: Vec<SubTrack>,
    run: Mutex<Option<Run>>,
    done: Mutex<BTreeSet<u32>>,
    /// The first complete init segment. Every run writes an equivalent
    /// one, but rewrites the file in place, so it is read once, when a
    /// segment after it is complete, and served from memory.
    init: Mutex<Option<Arc<Vec<u8>>>>,
    last_access: Mutex<Instant>,
    cancel: CancellationToken,
}

impl HlsService {
    /// Must be called inside a tokio runtime: it starts the idle reaper.
    pub fn new(cfg: HlsConfig, pool: Pool) -> HlsService {
        let svc = HlsService {
            inner: Arc::new(Inner {
                cfg,
                pool,
                sessions: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
            }),
        };
        let weak = Arc::downgrade(&svc.inner);
        let period = (svc.inner.cfg.idle_timeout / 4).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.shutdown.is_cancelled() {
                    return;
                }
                HlsService { inner }.reap_idle().await;
            }
        });
        svc
    }

    /// Number of live sessions.
    pub fn sessions(&self) -> usize {
        self.inner.sessions.lock().len()
    }

    /// Plans `input` for `profile` and opens a session; nothing is
    /// transcoded until the player asks for a playlist or segment.
    pub async fn start(
        &self,
        input: Input,
        path_for_container: &Path,
        info: &MediaInfo,
        profile: &Profile,
    ) -> Result<SessionInfo, HlsError> {
        let cfg = &self.inner.cfg;
        {
            let n = self.inner.sessions.lock().len();
            if n >= cfg.max_sessions {
                return Err(HlsError::TooManySessions(n));
            }
        }
        let mut decision = decide(info, path_for_container, profile, &cfg.options)?;
        // HLS is always a new container: direct play becomes a remux.
        if decision.decision == DecisionKind::DirectPlay {
            decision.decision = DecisionKind::Remux;
        }
        let video = info
            .video
            .iter()
            .find(|v| v.index == decision.video_stream)
            .ok_or(crate::decision::PlanError::NoVideo)?;
        let audio = decision
            .audio_stream
            .and_then(|i| info.audio.iter().find(|a| a.index == i));
        let mode = match &mut decision.video {
            VideoOut::Encode(e) => {
                e.keyframe_secs = Some(cfg.segment_secs);
                Mode::Encode {
                    bounds: segment_bounds(
                        info.duration_secs.unwrap_or(0.0),
                        cfg.segment_secs,
                        fps(video),
                    ),
                }
            }
            VideoOut::Copy { .. } => Mode::Copy,
        };
        let id = new_id();
        let dir = cfg.root.join(&id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| HlsError::Folder {
                path: dir.clone(),
                source,
            })?;
        let (codecs, bandwidth, resolution) = stream_inf(&decision, video, audio, info);
        let subs = info
            .subtitles
            .iter()
            .filter(|s| {
                matches!(
                    s.codec.as_str(),
                    "subrip" | "ass" | "ssa" | "webvtt" | "mov_text" | "text"
                )
            })
            .map(|s| SubTrack {
                stream: s.index,
                name: s
                    .title
                    .clone()
                    .or_else(|| s.language.clone())
                    .unwrap_or_else(|| format!("Track {}", s.index)),
                language: s.language.as_deref().map(bcp47),
                default: s.default,
                forced: s.forced,
            })
            .collect();
        let session = Arc::new(Session {
            dir,
            input,
            decision: decision.clone(),
            mode,
            codecs,
            bandwidth,
            resolution,
            subs,
            run: Mutex::new(None),
            done: Mutex::new(BTreeSet::new()),
            init: Mutex::new(None),
            last_access: Mutex::new(Instant::now()),
            cancel: self.inner.shutdown.child_token(),
        });
        self.inner
            .sessions
            .lock()
            .insert(id.clone(), session.clone());
        // Subtitles are small and converted once, in the background.
        let svc = self.clone();
        let s2 = session.clone();
        tokio::spawn(async move { svc.extract_subtitles(&s2).await });
        Ok(SessionInfo {
            master: format!("/hls/{id}/master.m3u8"),
            id,
            decision,
        })
    }

    /// Ends a session now (player closed): kills its ffmpeg, removes files.
    pub async fn stop(&self, id: &str) -> bool {
        let s = self.inner.sessions.lock().remove(id);
        match s {
            Some(s) => {
                end_session(&s).await;
                true
            }
            None => false,
        }
    }

    /// Ends every session.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let all: Vec<Arc<Session>> = self.inner.sessions.lock().drain().map(|(_, s)| s).collect();
        for s in all {
            end_session(&s).await;
        }
    }

    async fn reap_idle(&self) {
        let timeout = self.inner.cfg.idle_timeout;
        let idle: Vec<Arc<Session>> = {
            let mut map = self.inner.sessions.lock();
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, s)| s.last_access.lock().elapsed() > timeout)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for s in idle {
            tracing::info!(dir = %s.dir.display(), "HLS session idle; stopping its transcoder");
            end_session(&s).await;
        }
    }

    fn session(&self, id: &str) -> Result<Arc<Session>, HlsError> {
        if !valid_session_id(id) {
            return Err(HlsError::NoSession);
        }
        let s = self
            .inner
            .sessions
            .lock()
            .get(id)
            .cloned()
            .ok_or(HlsError::NoSession)?;
        *s.last_access.lock() = Instant::now();
        Ok(s)
    }

    /// The body and content type of `name` in session `id`, waiting for
    /// ffmpeg (and starting or restarting it) as needed.
    pub async fn file(&self, id: &str, name: &str) -> Result<(Vec<u8>, &'static str), HlsError> {
        let name = HlsName::parse(name).ok_or(HlsError::NoFile)?;
        let s = self.session(id)?;
        const M3U8: &str = "application/vnd.apple.mpegurl";
        match name {
            HlsName::Master => Ok((master_playlist(&s).into_bytes(), M3U8)),
            HlsName::Media => {
                let body = match &s.mode {
                    Mode::Encode { bounds } => media_playlist(bounds),
                    Mode::Copy => {
                        self.ensure_run(&s, 0);
                        self.wait_file(&s, &s.dir.join(HLS_PLAYLIST), u32::MAX)
                            .await?;
                        let text = tokio::fs::read_to_string(s.dir.join(HLS_PLAYLIST))
                            .await
                            .map_err(|_| HlsError::NoFile)?;
                        sanitize_ffmpeg_playlist(&text)
                    }
                };
                Ok((body.into_bytes(), M3U8))
            }
            HlsName::Init => Ok((self.init(&s).await?, "video/mp4")),
            HlsName::Segment(n) => {
                self.segment(&s, n).await?;
                Ok((
                    read(&s.dir.join(hls_segment_name(n))).await?,
                    "video/iso.segment",
                ))
            }
            HlsName::SubtitlePlaylist(i) => {
                let t = s
                    .subs
                    .iter()
                    .find(|t| t.stream == i)
                    .ok_or(HlsError::NoFile)?;
                let d = s.decision.duration_secs.unwrap_or(0.0).max(1.0);
                let body = format!(
                    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n\
                     #EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:{d:.3},\nsub{}.vtt\n#EXT-X-ENDLIST\n",
                    d.ceil() as u64,
                    t.stream
                );
                Ok((body.into_bytes(), M3U8))
            }
            HlsName::SubtitleFile(i) => {
                s.subs
                    .iter()
                    .find(|t| t.stream == i)
                    .ok_or(HlsError::NoFile)?;
                let p = s.dir.join(format!("sub{i}.vtt"));
                self.wait_file(&s, &p, u32::MAX).await?;
                Ok((read(&p).await?, "text/vtt; charset=utf-8"))
            }
        }
    }

    /// Waits until segment `n` is complete, (re)starting ffmpeg when it is
    /// not going to get there soon.
    async fn segment(&self, s: &Arc<Session>, n: u32) -> Result<(), HlsError> {
        if let Mode::Encode { bounds } = &s.mode
            && n as usize + 1 >= bounds.len()
        {
            return Err(HlsError::NoFile);
        }
        let deadline = Instant::now() + self.inner.cfg.segment_wait;
        loop {
            refresh_done(s).await;
            if s.done.lock().contains(&n) {
                return Ok(());
            }
            let finished = {
                let run = s.run.lock();
                run.as_ref().and_then(|r| r.result.lock().clone())
            };
            match &s.mode {
                Mode::Copy => {
                    self.ensure_run(s, 0);
                    match finished {
                        Some(Err(e)) => return Err(HlsError::Transcode(e)),
                        Some(Ok(())) => return Err(HlsError::NoFile),
                        None => {}
                    }
                }
                Mode::Encode { .. } => {
                    let restart = {
                        let run = s.run.lock();
                        match run.as_ref() {
                            None => true,
                            Some(r) => {
                                let produced = s
                                    .done
                                    .lock()
                                    .range(r.start..)
                                    .take_while({
                                        let mut next = r.start;
                                        move |k| {
                                            let ok = **k == next;
                                            next += 1;
                                            ok
                                        }
                                    })
                                    .last()
                                    .map_or(r.start, |k| k + 1);
                                n < r.start
                                    || n > produced + self.inner.cfg.restart_gap
                                    || r.result.lock().is_some()
                            }
                        }
                    };
                    if restart {
                        if let Some(Err(e)) = &finished
                            && s.run.lock().as_ref().is_some_and(|r| r.start == n)
                        {
                            return Err(HlsError::Transcode(e.clone()));
                        }
                        self.start_run(s, n);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(HlsError::Timeout(n));
            }
            // Cancel-safety: a dropped request just stops waiting; the run
            // belongs to the session.
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    async fn init(&self, s: &Arc<Session>) -> Result<Vec<u8>, HlsError> {
        if let Some(b) = s.init.lock().clone() {
            return Ok(b.to_vec());
        }
        self.ensure_run(s, 0);
        let deadline = Instant::now() + self.inner.cfg.segment_wait;
        loop {
            refresh_done(s).await;
            // ffmpeg writes the init segment before the first media
            // segment; once one is listed, the init is complete (unless a
            // restart is rewriting it right now, hence the size check).
            if !s.done.lock().is_empty() {
                let b = read(&s.dir.join(HLS_INIT)).await?;
                let boxes_ok = b.len() > 8 && b.windows(4).any(|w| w == b"mvex");
                if boxes_ok {
                    let b = Arc::new(b);
                    *s.init.lock() = Some(b.clone());
                    return Ok(b.to_vec());
                }
            }
            let failed = s.run.lock().as_ref().and_then(|r| r.result.lock().clone());
            if let Some(Err(e)) = failed {
                return Err(HlsError::Transcode(e));
            }
            if Instant::now() > deadline {
                return Err(HlsError::Timeout(0));
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    fn ensure_run(&self, s: &Arc<Session>, n: u32) {
        if s.run.lock().is_none() {
            self.start_run(s, n);
        }
    }

    /// Starts ffmpeg at segment `n`, ending the previous run.
    fn start_run(&self, s: &Arc<Session>, n: u32) {
        let mut run = s.run.lock();
        if let Some(old) = run.take() {
            old.cancel.cancel();
        }
        let (start_secs, hls_time, event) = match &s.mode {
            // Cut at every keyframe: the only keyframes are the forced
            // ones at segment boundaries.
            Mode::Encode { bounds } => (Some(bounds[n as usize]), 0.1, true),
            Mode::Copy => (None, self.inner.cfg.segment_secs, true),
        };
        let Some(job) = s.decision.job(
            s.input.clone(),
            Output::Hls {
                dir: s.dir.clone(),
                segment_secs: hls_time,
                start_number: n,
                event,
            },
        ) else {
            return;
        };
        let job = ffmpeg::Job { start_secs, ..job };
        let cancel = s.cancel.child_token();
        let result = Arc::new(Mutex::new(None));
        *run = Some(Run {
            start: n,
            cancel: cancel.clone(),
            result: result.clone(),
        });
        let pool = self.inner.pool.clone();
        tracing::debug!(segment = n, "starting HLS transcoder");
        tokio::spawn(async move {
            let (tx, _rx) = watch::channel(Progress::default());
            let r = pool.run(Priority::Interactive, &job, &cancel, &tx).await;
            let r = match r {
                Ok(()) => Ok(()),
                Err(RunError::Cancelled | RunError::ShuttingDown) => return,
                Err(e) => Err(e.to_string()),
            };
            *result.lock() = Some(r);
        });
    }

    async fn wait_file(&self, s: &Arc<Session>, p: &Path, _seg: u32) -> Result<(), HlsError> {
        let deadline = Instant::now() + self.inner.cfg.segment_wait;
        loop {
            if tokio::fs::try_exists(p).await.unwrap_or(false) {
                return Ok(());
            }
            let failed = s.run.lock().as_ref().and_then(|r| r.result.lock().clone());
            if let Some(Err(e)) = failed {
                return Err(HlsError::Transcode(e));
            }
            if s.cancel.is_cancelled() {
                return Err(HlsError::NoSession);
            }
            if Instant::now() > deadline {
                return Err(HlsError::Timeout(0));
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    async fn extract_subtitles(&self, s: &Arc<Session>) {
        for t in &s.subs {
            let out = s.dir.join(format!("sub{}.vtt", t.stream));
            let tmp = s.dir.join(format!("sub{}.vtt.tmp", t.stream));
            let Ok(args) = ffmpeg::job::webvtt_args(&s.input, t.stream, &tmp) else {
                continue;
            };
            let (tx, _rx) = watch::channel(Progress::default());
            match self
                .inner
                .pool
                .run_args(Priority::Interactive, args, &s.cancel, &tx)
                .await
            {
                Ok(()) => {
                    let Ok(text) = tokio::fs::read_to_string(&tmp).await else {
                        continue;
                    };
                    let _ = tokio::fs::write(&tmp, with_timestamp_map(&text)).await;
                    let _ = tokio::fs::rename(&tmp, &out).await;
                }
                Err(e) => tracing::warn!(stream = t.stream, "subtitle conversion failed: {e}"),
            }
        }
    }
}

async fn end_session(s: &Session) {
    s.cancel.cancel();
    if let Some(r) = s.run.lock().take() {
        r.cancel.cancel();
    }
    // ffmpeg may still be writing for a moment after the kill.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = tokio::fs::remove_dir_all(&s.dir).await;
}

async fn read(p: &Path) -> Result<Vec<u8>, HlsError> {
    tokio::fs::read(p).await.map_err(|_| HlsError::NoFile)
}

/// Adds the segments ffmpeg's playlist lists (ffmpeg rewrites it after
/// each finished segment) to the session's finished set.
async fn refresh_done(s: &Session) {
    let Ok(text) = tokio::fs::read_to_string(s.dir.join(HLS_PLAYLIST)).await else {
        return;
    };
    let mut done = s.done.lock();
    for line in text.lines() {
        if let Some(HlsName::Segment(n)) = HlsName::parse(line.trim()) {
            done.insert(n);
        }
    }
}

/// ffmpeg's playlist with only lines we understand (and names we serve).
fn sanitize_ffmpeg_playlist(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let l = line.trim();
        let keep = if l.starts_with('#') {
            !l.starts_with("#EXT-X-MAP") || l == format!("#EXT-X-MAP:URI=\"{HLS_INIT}\"")
        } else {
            l.is_empty() || matches!(HlsName::parse(l), Some(HlsName::Segment(_)))
        };
        if keep {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn new_id() -> String {
    let b: [u8; 16] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fps(v: &VideoStream) -> Option<f64> {
    let (n, d) = v.frame_rate.as_deref()?.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0.0 && d > 0.0 && n / d < 400.0).then(|| n / d)
}

/// Segment start times: each multiple of `seg` moved to the first frame
/// at or after it (where `-force_key_frames` puts the keyframe), then the
/// end of the file.
pub fn segment_bounds(duration: f64, seg: f64, fps: Option<f64>) -> Vec<f64> {
    let frame = fps.map_or(0.04, |f| 1.0 / f);
    let align = |t: f64| match fps {
        Some(f) => ((t * f) - 1e-6).ceil() / f,
        None => t,
    };
    let mut b = vec![0.0];
    let mut n = 1u32;
    loop {
        let t = align(n as f64 * seg);
        // A boundary needs at least one frame after it.
        if t > duration - frame * 0.99 {
            break;
        }
        b.push(t);
        n += 1;
    }
    b.push(duration.max(b[b.len() - 1]));
    b
}

fn media_playlist(bounds: &[f64]) -> String {
    let longest = bounds
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0f64, f64::max);
    let mut p = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{HLS_INIT}\"\n",
        longest.round().max(1.0) as u64
    );
    for (i, w) in bounds.windows(2).enumerate() {
        p.push_str(&format!(
            "#EXTINF:{:.6},\n{}\n",
            w[1] - w[0],
            hls_segment_name(i as u32)
        ));
    }
    p.push_str("#EXT-X-ENDLIST\n");
    p
}

fn master_playlist(s: &Session) -> String {
    let mut p = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for t in &s.subs {
        p.push_str(&format!(
            "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"{}\",{}DEFAULT={},AUTOSELECT=YES,FORCED={},URI=\"sub{}.m3u8\"\n",
            t.name.replace(['"', '\n', '\r'], "'"),
            t.language
                .as_ref()
                .map(|l| format!("LANGUAGE=\"{l}\","))
                .unwrap_or_default(),
            if t.default { "YES" } else { "NO" },
            if t.forced { "YES" } else { "NO" },
            t.stream
        ));
    }
    p.push_str(&format!(
        "#EXT-X-STREAM-INF:BANDWIDTH={},CODECS=\"{}\"",
        s.bandwidth, s.codecs
    ));
    if let Some((w, h)) = s.resolution {
        p.push_str(&format!(",RESOLUTION={w}x{h}"));
    }
    if !s.subs.is_empty() {
        p.push_str(",SUBTITLES=\"subs\"");
    }
    p.push_str("\nvideo.m3u8\n");
    p
}

/// CODECS, BANDWIDTH and RESOLUTION of what the session produces.
fn stream_inf(
    d: &Decision,
    v: &VideoStream,
    a: Option<&AudioStream>,
    info: &MediaInfo,
) -> (String, u64, Option<(u32, u32)>) {
    let (vcodec, vkbps, res) = match &d.video {
        VideoOut::Copy { .. } => (
            video_codecs(&v.codec, v.profile.as_deref(), v.level),
            v.bit_rate
                .or(info.bit_rate)
                .map_or(8000, |b| (b / 1000) as u32),
            (v.width, v.height),
        ),
        VideoOut::Encode(e) => {
            let h = e
                .max_height
                .filter(|m| *m < v.height)
                .map_or(v.height, |m| m & !1);
            let w = if v.height > 0 {
                ((v.width as u64 * h as u64 / v.height as u64) as u32 + 1) & !1
            } else {
                v.width
            };
            let c = match e.codec {
                VideoCodec::H264 => video_codecs("h264", Some("High"), Some(41)),
                VideoCodec::Hevc => video_codecs("hevc", Some("Main"), Some(120)),
            };
            (c, e.bitrate_kbps, (w, h))
        }
    };
    let (acodec, akbps) = match (&d.audio, a) {
        (_, None) => (None, 0),
        (AudioOut::Copy, Some(a)) => (
            audio_codecs(&a.codec, a.profile.as_deref()),
            a.bit_rate.map_or(640, |b| (b / 1000) as u32),
        ),
        (
            AudioOut::Encode {
                codec,
                bitrate_kbps,
                ..
            },
            Some(_),
        ) => (
            Some(
                match codec {
                    AudioCodec::Aac => "mp4a.40.2",
                    AudioCodec::Ac3 => "ac-3",
                    AudioCodec::Eac3 => "ec-3",
                }
                .to_string(),
            ),
            *bitrate_kbps,
        ),
    };
    let mut codecs = vcodec;
    if let Some(a) = acodec {
        codecs.push(',');
        codecs.push_str(&a);
    }
    // Peaks run above the average; players pick variants by this.
    let bandwidth = (vkbps as u64 + akbps as u64) * 1000 * 5 / 4;
    (codecs, bandwidth, Some(res))
}

/// RFC 6381 codec string of a video stream as ffprobe describes it.
pub fn video_codecs(codec: &str, profile: Option<&str>, level: Option<i64>) -> String {
    let level = level.unwrap_or(0).max(0);
    match codec {
        "h264" => {
            let (idc, constraint) = match profile.unwrap_or("High") {
                "Constrained Baseline" => (0x42, 0x40),
                "Baseline" => (0x42, 0x00),
                "Main" => (0x4d, 0x00),
                "Extended" => (0x58, 0x00),
                "High 10" => (0x6e, 0x00),
                "High 4:2:2" => (0x7a, 0x00),
                "High 4:4:4 Predictive" => (0xf4, 0x00),
                _ => (0x64, 0x00),
            };
            format!("avc1.{idc:02x}{constraint:02x}{level:02x}")
        }
        "hevc" => {
            let (idc, compat) = match profile.unwrap_or("Main") {
                "Main 10" => (2, 4),
                "Main Still Picture" => (3, 2),
                "Rext" => (4, 8),
                _ => (1, 6),
            };
            format!("hvc1.{idc}.{compat}.L{level}.B0")
        }
        "av1" => "av01.0.08M.08".into(),
        "vp9" => "vp09.00.40.08".into(),
        other => other.into(),
    }
}

pub fn audio_codecs(codec: &str, profile: Option<&str>) -> Option<String> {
    Some(
        match codec {
            "aac" => match profile {
                Some("HE-AAC") => "mp4a.40.5",
                Some("HE-AACv2") => "mp4a.40.29",
                _ => "mp4a.40.2",
            },
            "ac3" => "ac-3",
            "eac3" => "ec-3",
            "mp3" => "mp4a.40.34",
            "opus" => "Opus",
            "flac" => "fLaC",
            "alac" => "alac",
            _ => return None,
        }
        .to_string(),
    )
}

/// HLS WebVTT cues are relative to the media timeline; segments carry
/// the source's timestamps from zero (`tfdt`), so that is an offset of 0.
fn with_timestamp_map(vtt: &str) -> String {
    let body = vtt.trim_start_matches('\u{feff}');
    let rest = body.strip_prefix("WEBVTT").unwrap_or(body);
    let (header_rest, cues) = rest.split_once('\n').unwrap_or((rest, ""));
    format!("WEBVTT{header_rest}\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n{cues}")
}

/// ISO 639-2 (ffprobe) to the RFC 5646 tags HLS wants, for common ones.
fn bcp47(lang: &str) -> String {
    match lang {
        "eng" => "en",
        "fre" | "fra" => "fr",
        "ger" | "deu" => "de",
        "spa" => "es",
        "ita" => "it",
        "jpn" => "ja",
        "por" => "pt",
        "rus" => "ru",
        "chi" | "zho" => "zh",
        "kor" => "ko",
        "dut" | "nld" => "nl",
        "swe" => "sv",
        "pol" => "pl",
        other => other,
    }
    .to_string()
}

/// Axum routes: `GET /hls/{session}/{name}` and `DELETE /hls/{session}`.
pub fn router(service: HlsService) -> axum::Router {
    axum::Router::new()
        .route("/hls/{session}/{name}", axum::routing::get(get_file))
        .route("/hls/{session}", axum::routing::delete(delete_session))
        .with_state(service)
}

async fn get_file(
    State(svc): State<HlsService>,
    UrlPath((session, name)): UrlPath<(String, String)>,
) -> Response {
    match svc.file(&session, &name).await {
        Ok((body, ctype)) => {
            let cache = if ctype.contains("mpegurl") {
                "no-cache"
            } else {
                "max-age=3600"
            };
            (
                [
                    (header::CONTENT_TYPE, ctype),
                    (header::CACHE_CONTROL, cache),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn delete_session(
    State(svc): State<HlsService>,
    UrlPath(session): UrlPath<String>,
) -> StatusCode {
    if valid_session_id(&session) && svc.stop(&session).await {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_strict() {
        assert_eq!(HlsName::parse("seg12.m4s"), Some(HlsName::Segment(12)));
        assert_eq!(HlsName::parse("seg0.m4s"), Some(HlsName::Segment(0)));
        assert_eq!(HlsName::parse("sub3.vtt"), Some(HlsName::SubtitleFile(3)));
        for bad in [
            "../master.m3u8",
            "seg-1.m4s",
            "seg01.m4s",
            "seg1.m4s/..",
            "seg.m4s",
            "seg1234567.m4s",
            "seg1.mp4",
            "ffmpeg.m3u8",
            "init.mp4.tmp",
            "..",
            "",
            "sub1.vtt.tmp",
            "seg1.m4s\0",
            "/etc/passwd",
            "seg١.m4s",
        ] {
            assert_eq!(HlsName::parse(bad), None, "{bad:?}");
        }
        assert!(valid_session_id(&new_id()));
        assert!(!valid_session_id("../../../../etc/passwd/xxxxxxxxxxx"));
        assert!(!valid_session_id("ABCDEF0123456789ABCDEF0123456789"));
    }

    #[test]
    fn bounds_follow_frames() {
        let b = segment_bounds(10.01, 2.0, Some(24000.0 / 1001.0));
        assert_eq!(b.len(), 6 + 1 - 1, "{b:?}");
        assert!((b[1] - 2.002).abs() < 1e-3, "{b:?}");
        assert_eq!(*b.last().unwrap(), 10.01);
        // 25 fps, exact multiples stay put.
        let b = segment_bounds(9.0, 3.0, Some(25.0));
        assert_eq!(b, vec![0.0, 3.0, 6.0, 9.0]);
        let p = media_playlist(&b);
        assert!(
            p.contains("#EXTINF:3.000000,\nseg2.m4s\n#EXT-X-ENDLIST"),
            "{p}"
        );
    }

    #[test]
    fn codec_strings() {
        assert_eq!(video_codecs("h264", Some("High"), Some(41)), "avc1.640029");
        assert_eq!(
            video_codecs("h264", Some("Constrained Baseline"), Some(30)),
            "avc1.42401e"
        );
        assert_eq!(
            video_codecs("hevc", Some("Main 10"), Some(60)),
            "hvc1.2.4.L60.B0"
        );
        assert_eq!(audio_codecs("ac3", None).unwrap(), "ac-3");
    }

    #[test]
    fn ffmpeg_playlist_is_filtered() {
        let t = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg0.m4s\n../../etc/passwd\n#EXT-X-MAP:URI=\"/x\"\n";
        let s = sanitize_ffmpeg_playlist(t);
        assert_eq!(
            s,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg0.m4s\n"
        );
    }

    #[test]
    fn vtt_gets_a_timestamp_map() {
        let v = with_timestamp_map("WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n");
        assert!(
            v.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000\n\n00:01.000"),
            "{v}"
        );
    }
}
