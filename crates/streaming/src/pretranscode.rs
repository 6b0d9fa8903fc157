//! Pre-transcoding: films that the household's devices cannot play
//! directly are converted in the background, while they download, into a
//! file beside the film that they can (a faststart MP4, or an fMP4 HLS
//! folder).
//!
//! The queue is bounded ([`PreTranscodeConfig::capacity`]) and ordered by
//! priority, then arrival. Jobs run in the [`Pool`] as background work
//! (at most `workers - 1` at once, niced), so playback keeps a core.
//! Output is written under a temporary name and renamed only after ffmpeg
//! succeeded, so a killed or crashed ffmpeg never leaves a file that looks
//! ready. The input may be a path or an HTTP URL of `riptide stream`, which
//! delivers a downloading file in order.

use crate::decision::{DecisionKind, Options, check_complete, decide};
use crate::profiles::Profile;
use axum::extract::State;
use ffmpeg::{Input, Output, Pool, Priority, Progress, RunError};
use parking_lot::Mutex;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// `{stem}.riptide.mp4` beside the film.
    Mp4,
    /// `{stem}.riptide-hls/` (master.m3u8 + fMP4 segments) beside the film.
    Hls,
}

#[derive(Debug, Clone)]
pub struct PreTranscodeConfig {
    /// Jobs waiting at most; more are refused.
    pub capacity: usize,
    /// Jobs running at once (the pool caps background work further).
    pub concurrency: usize,
    /// The household's devices: output must play directly on all.
    pub household: Vec<Profile>,
    pub format: OutputFormat,
    /// Finished/failed jobs kept for the status API.
    pub history: usize,
    pub options: Options,
}

impl PreTranscodeConfig {
    pub fn new(household: Vec<Profile>) -> PreTranscodeConfig {
        PreTranscodeConfig {
            capacity: 64,
            concurrency: 1,
            household,
            format: OutputFormat::Mp4,
            history: 32,
            options: Options::default(),
        }
    }
}

/// A film to pre-transcode.
#[derive(Debug, Clone)]
pub struct Request {
    /// What ffmpeg reads: the file, or the stream URL while downloading.
    pub input: Input,
    /// Where the film is (or will be once downloaded); the output goes
    /// beside it, and its extension tells the container.
    pub film: PathBuf,
    /// Higher runs first.
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum JobState {
    Queued,
    Running,
    /// Output renamed into place; `realtime_factor` = media s per wall s.
    Done {
        output: PathBuf,
        decision: DecisionKind,
        realtime_factor: f64,
        secs: f64,
    },
    /// Nothing to do: it already plays directly everywhere.
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
    },
    Cancelled,
}

impl JobState {
    pub fn is_final(&self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub id: u64,
    pub film: PathBuf,
    pub priority: i32,
    #[serde(flatten)]
    pub state: JobState,
    /// Media time converted so far.
    pub progress_secs: f64,
    pub duration_secs: Option<f64>,
    /// Media seconds per wall second so far (running jobs).
    pub speed: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    /// Jobs waiting (the queue length).
    pub queued: usize,
    pub running: usize,
    pub capacity: usize,
    /// Of the running jobs (mean), else of the last finished one.
    pub realtime_factor: Option<f64>,
    pub jobs: Vec<JobStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the pre-transcode queue is full ({0} films); try again when some have finished")]
    Full(usize),
    #[error("the household has no devices configured; add at least one device profile")]
    NoDevices,
    #[error("the pre-transcoder is shut down")]
    ShutDown,
}

#[derive(Clone)]
pub struct PreTranscoder {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: PreTranscodeConfig,
    target: Profile,
    pool: Pool,
    state: Mutex<QueueState>,
    wake: Notify,
    shutdown: CancellationToken,
}

struct Entry {
    req: Request,
    status: JobStatus,
    cancel: CancellationToken,
    done: watch::Sender<bool>,
}

#[derive(Default)]
struct QueueState {
    heap: BinaryHeap<(i32, Reverse<u64>)>,
    jobs: HashMap<u64, Entry>,
    finished: VecDeque<u64>,
    running: usize,
    next_id: u64,
    last_rtf: Option<f64>,
}

impl PreTranscoder {
    /// Must be called inside a tokio runtime (starts the dispatcher).
    pub fn new(cfg: PreTranscodeConfig, pool: Pool) -> Result<PreTranscoder, QueueError> {
        let target = Profile::intersection(&cfg.household).ok_or(QueueError::NoDevices)?;
        let pt = PreTranscoder {
            inner: Arc::new(Inner {
                cfg,
                target,
                pool,
                state: Mutex::new(QueueState::default()),
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
            }),
        };
        let me = pt.clone();
        tokio::spawn(async move { me.dispatch().await });
        Ok(pt)
    }

    /// Where the output for `film` goes.
    pub fn output_path(&self, film: &Path) -> PathBuf {
        output_path(film, self.inner.cfg.format)
    }

    /// Queues a film; returns its job id.
    pub fn submit(&self, req: Request) -> Result<u64, QueueError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(QueueError::ShutDown);
        }
        let mut st = self.inner.state.lock();
        if st.heap.len() >= self.inner.cfg.capacity {
            return Err(QueueError::Full(st.heap.len()));
        }
        let id = st.next_id;
        st.next_id += 1;
        st.heap.push((req.priority, Reverse(id)));
        let (done, _) = watch::channel(false);
        st.jobs.insert(
            id,
            Entry {
                status: JobStatus {
                    id,
                    film: req.film.clone(),
                    priority: req.priority,
                    state: JobState::Queued,
                    progress_secs: 0.0,
                    duration_secs: None,
                    speed: 0.0,
                },
                req,
                cancel: self.inner.shutdown.child_token(),
                done,
            },
        );
        drop(st);
        self.inner.wake.notify_one();
        Ok(id)
    }

    pub fn status(&self) -> QueueStatus {
        let st = self.inner.state.lock();
        let mut jobs: Vec<JobStatus> = st.jobs.values().map(|e| e.status.clone()).collect();
        jobs.sort_by_key(|j| j.id);
        let speeds: Vec<f64> = jobs
            .iter()
            .filter(|j| j.state == JobState::Running && j.speed > 0.0)
            .map(|j| j.speed)
            .collect();
        QueueStatus {
            queued: st.heap.len(),
            running: st.running,
            capacity: self.inner.cfg.capacity,
            realtime_factor: if speeds.is_empty() {
                st.last_rtf
            } else {
                Some(speeds.iter().sum::<f64>() / speeds.len() as f64)
            },
            jobs,
        }
    }

    pub fn job(&self, id: u64) -> Option<JobStatus> {
        self.inner
            .state
            .lock()
            .jobs
            .get(&id)
            .map(|e| e.status.clone())
    }

    /// Waits until job `id` is finished, failed, skipped or cancelled.
    pub async fn wait(&self, id: u64) -> Option<JobStatus> {
        let mut rx = self.inner.state.lock().jobs.get(&id)?.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
        self.job(id)
    }

    pub fn cancel(&self, id: u64) {
        let mut st = self.inner.state.lock();
        if let Some(e) = st.jobs.get_mut(&id) {
            e.cancel.cancel();
            if e.status.state == JobState::Queued {
                e.status.state = JobState::Cancelled;
                e.done.send_replace(true);
                st.heap.retain(|(_, Reverse(j))| *j != id);
            }
        }
    }

    /// Cancels everything; running ffmpegs are killed and their partial
    /// output removed.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.wake.notify_one();
    }

    async fn dispatch(self) {
        loop {
            // Cancel-safety: `notified` and `cancelled` hold no state.
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            loop {
                let next = {
                    let mut st = self.inner.state.lock();
                    if st.running >= self.inner.cfg.concurrency.max(1) {
                        None
                    } else {
                        let popped = st.heap.pop().map(|(_, Reverse(id))| id);
                        if let Some(id) = popped {
                            st.running += 1;
                            if let Some(e) = st.jobs.get_mut(&id) {
                                e.status.state = JobState::Running;
                            }
                        }
                        popped
                    }
                };
                let Some(id) = next else { break };
                let me = self.clone();
                tokio::spawn(async move {
                    let state = me.run_job(id).await;
                    me.finish(id, state);
                    me.inner.wake.notify_one();
                });
            }
        }
    }

    fn finish(&self, id: u64, state: JobState) {
        let mut st = self.inner.state.lock();
        st.running -= 1;
        if let JobState::Done {
            realtime_factor, ..
        } = &state
        {
            st.last_rtf = Some(*realtime_factor);
        }
        if let Some(e) = st.jobs.get_mut(&id) {
            e.status.state = state;
            e.done.send_replace(true);
        }
        st.finished.push_back(id);
        while st.finished.len() > self.inner.cfg.history {
            if let Some(old) = st.finished.pop_front() {
                st.jobs.remove(&old);
            }
        }
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut JobStatus)) {
        if let Some(e) = self.inner.state.lock().jobs.get_mut(&id) {
            f(&mut e.status);
        }
    }

    async fn run_job(&self, id: u64) -> JobState {
        let (req, cancel) = {
            let st = self.inner.state.lock();
            let Some(e) = st.jobs.get(&id) else {
                return JobState::Cancelled;
            };
            (e.req.clone(), e.cancel.clone())
        };
        if cancel.is_cancelled() {
            return JobState::Cancelled;
        }
        let target = &self.inner.target;
        let info = match probe_retrying(&req.input, &cancel).await {
            Ok(i) => i,
            Err(e) => return JobState::Failed { error: e },
        };
        let decision = match decide(&info, &req.film, target, &self.inner.cfg.options) {
            Ok(d) => d,
            Err(e) => {
                return JobState::Failed {
                    error: e.to_string(),
                };
            }
        };
        if decision.decision == DecisionKind::DirectPlay {
            return JobState::Skipped {
                reason: format!("plays directly on {}", target.display),
            };
        }
        let duration = info.duration_secs;
        self.update(id, |s| s.duration_secs = duration);
        let format = self.inner.cfg.format;
        let final_path = output_path(&req.film, format);
        let tmp = temp_path(&final_path);
        let _ = remove_any(&tmp).await;
        let mut decision = decision;
        let output = match format {
            OutputFormat::Mp4 => Output::Mp4 { path: tmp.clone() },
            OutputFormat::Hls => {
                if let Err(e) = tokio::fs::create_dir_all(&tmp).await {
                    return JobState::Failed {
                        error: format!("cannot create {}: {e}", tmp.display()),
                    };
                }
                if let ffmpeg::VideoOut::Encode(e) = &mut decision.video {
                    e.keyframe_secs = Some(6.0);
                }
                Output::Hls {
                    dir: tmp.clone(),
                    segment_secs: 6.0,
                    start_number: 0,
                    event: false,
                }
            }
        };
        let job = decision
            .job(req.input.clone(), output)
            .expect("not direct play");
        let (tx, mut rx) = watch::channel(Progress::default());
        let started = Instant::now();
        let run = self
            .inner
            .pool
            .run(Priority::Background, &job, &cancel, &tx);
        tokio::pin!(run);
        let result = loop {
            // Cancel-safety: `changed` only observes; dropping `run` (if
            // this job's future is dropped) kills ffmpeg.
            tokio::select! {
                r = &mut run => break r,
                c = rx.changed() => {
                    if c.is_err() { continue; }
                    let p = rx.borrow_and_update().clone();
                    let secs = p.out_time.as_secs_f64();
                    let wall = started.elapsed().as_secs_f64().max(1e-3);
                    self.update(id, |s| { s.progress_secs = secs; s.speed = secs / wall; });
                }
            }
        };
        let wall = started.elapsed().as_secs_f64();
        if let Err(e) = result {
            let _ = remove_any(&tmp).await;
            return match e {
                RunError::Cancelled | RunError::ShuttingDown => JobState::Cancelled,
                e => JobState::Failed {
                    error: e.to_string(),
                },
            };
        }
        if let Err(e) = finalize(&tmp, &final_path, format).await {
            let _ = remove_any(&tmp).await;
            return JobState::Failed { error: e };
        }
        // The point of it all: the result must now play directly.
        let check = match format {
            OutputFormat::Mp4 => {
                let res = ffmpeg::probe(&final_path).await;
                match res {
                    Ok(out) => {
                        let last = ffmpeg::last_packet_secs(
                            &Input::File(final_path.clone()),
                            (out.duration_secs.unwrap_or(0.0) - 3.0).max(0.0),
                        )
                        .await
                        .ok()
                        .flatten();
                        check_complete(&out, last)
                            .map_err(|e| e.to_string())
                            .and_then(|()| {
                                decide(&out, &final_path, target, &self.inner.cfg.options)
                                    .map_err(|e| e.to_string())
                            })
                            .map(|d| d.decision)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            // HLS output is the played form itself.
            OutputFormat::Hls => Ok(DecisionKind::DirectPlay),
        };
        match check {
            Ok(DecisionKind::DirectPlay) => JobState::Done {
                output: final_path,
                decision: DecisionKind::DirectPlay,
                realtime_factor: duration.unwrap_or(0.0) / wall.max(1e-3),
                secs: wall,
            },
            Ok(other) => {
                let _ = remove_any(&final_path).await;
                JobState::Failed {
                    error: format!(
                        "the result would still need {} on {}; this is a bug",
                        other.as_str(),
                        target.display
                    ),
                }
            }
            Err(e) => {
                let _ = remove_any(&final_path).await;
                JobState::Failed {
                    error: format!("the result does not probe: {e}"),
                }
            }
        }
    }
}

/// `Film.mkv` → `Film.riptide.mp4` / `Film.riptide-hls`.
pub fn output_path(film: &Path, format: OutputFormat) -> PathBuf {
    let stem = film
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "film".into());
    let name = match format {
        OutputFormat::Mp4 => format!("{stem}.riptide.mp4"),
        OutputFormat::Hls => format!("{stem}.riptide-hls"),
    };
    film.with_file_name(name)
}

/// `.Film.riptide.mp4.part`: hidden, and not what anyone looks for.
fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(format!(".{name}.part"))
}

async fn remove_any(p: &Path) -> std::io::Result<()> {
    match tokio::fs::symlink_metadata(p).await {
        Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(p).await,
        Ok(_) => tokio::fs::remove_file(p).await,
        Err(e) => Err(e),
    }
}

/// Makes the output durable, then gives it its real name.
async fn finalize(tmp: &Path, final_path: &Path, format: OutputFormat) -> Result<(), String> {
    let tmp2 = tmp.to_path_buf();
    let fin = final_path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if format == OutputFormat::Hls {
            // Our master playlist points at ffmpeg's media playlist.
            let master = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
                          #EXT-X-STREAM-INF:BANDWIDTH=8000000\nffmpeg.m3u8\n";
            std::fs::write(tmp2.join("master.m3u8"), master)?;
            for e in std::fs::read_dir(&tmp2)? {
                std::fs::File::open(e?.path())?.sync_all()?;
            }
        } else {
            std::fs::File::open(&tmp2)?.sync_all()?;
        }
        if fin.exists() && format == OutputFormat::Hls {
            std::fs::remove_dir_all(&fin)?;
        }
        std::fs::rename(&tmp2, &fin)?;
        if let Some(parent) = fin.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot move the result into place: {e}"))
}

/// ffprobe on a stream that is still downloading may time out while the
/// first pieces arrive; try a few times.
async fn probe_retrying(
    input: &Input,
    cancel: &CancellationToken,
) -> Result<ffmpeg::MediaInfo, String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        match ffmpeg::probe_input(input).await {
            Ok(i) => return Ok(i),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
    }
    Err(format!("cannot probe {input}: {last}"))
}

/// `GET /pretranscode/status`: the queue as JSON.
pub fn router(pt: PreTranscoder) -> axum::Router {
    axum::Router::new()
        .route("/pretranscode/status", axum::routing::get(status_handler))
        .with_state(pt)
}

async fn status_handler(State(pt): State<PreTranscoder>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::to_vec(&pt.status()).unwrap_or_default();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_beside_the_film() {
        let f = Path::new("/lib/Se7en (1995)/Se7en.mkv");
        assert_eq!(
            output_path(f, OutputFormat::Mp4),
            Path::new("/lib/Se7en (1995)/Se7en.riptide.mp4")
        );
        assert_eq!(
            temp_path(&output_path(f, OutputFormat::Mp4)),
            Path::new("/lib/Se7en (1995)/.Se7en.riptide.mp4.part")
        );
        assert_eq!(
            output_path(f, OutputFormat::Hls),
            Path::new("/lib/Se7en (1995)/Se7en.riptide-hls")
        );
    }
}
