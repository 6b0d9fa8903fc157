//! A bounded pool of ffmpeg workers, one per core by default, each pinned
//! to its own CPUs.
//!
//! Playback (interactive) work may use every slot; background work
//! (pre-transcodes) at most `workers - 1` of them, so a player that starts
//! while the pool pre-transcodes still finds a free core. Background
//! children also run at a higher niceness. Waiting for a slot is bounded by
//! the callers: the pre-transcode queue is bounded and HLS sessions are
//! one per player.
//!
//! Whether pinning pays off is measured by `cargo bench -p ffmpeg --bench
//! pool_affinity` (BENCHMARKS.md); it is a config switch either way.

use crate::job::Job;
use crate::process::{self, ChildSettings, RunError, allowed_cpus};
use crate::progress::Progress;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Concurrent ffmpeg processes; 0 = one per allowed CPU.
    pub workers: usize,
    /// Pin each worker slot to its own CPUs.
    pub pin_cpus: bool,
    /// Niceness added to background jobs.
    pub background_nice: i32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 0,
            // Off: pinning did not help on the 2-core box (BENCHMARKS.md).
            pin_cpus: false,
            background_nice: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A player is waiting.
    Interactive,
    /// Pre-transcoding; yields to playback.
    Background,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    pub workers: usize,
    pub running: usize,
    pub waiting: usize,
}

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Semaphore,
    background: Semaphore,
    /// `busy[i]`: slot `i` (pinned to `slot_cpus[i]`) is in use.
    busy: Mutex<Vec<bool>>,
    slot_cpus: Vec<Vec<usize>>,
    pin: bool,
    nice: i32,
    shutdown: CancellationToken,
    active: Mutex<HashMap<u64, CancellationToken>>,
    next_id: AtomicU64,
    running: AtomicUsize,
    waiting: AtomicUsize,
}

impl Pool {
    pub fn new(cfg: PoolConfig) -> Pool {
        let cpus = allowed_cpus();
        let workers = if cfg.workers == 0 {
            cpus.len()
        } else {
            cfg.workers
        };
        let slot_cpus: Vec<Vec<usize>> = (0..workers)
            .map(|i| {
                let mine: Vec<usize> = cpus.iter().copied().skip(i).step_by(workers).collect();
                if mine.is_empty() {
                    vec![cpus[i % cpus.len()]]
                } else {
                    mine
                }
            })
            .collect();
        Pool {
            inner: Arc::new(Inner {
                permits: Semaphore::new(workers),
                background: Semaphore::new(workers.saturating_sub(1).max(1)),
                busy: Mutex::new(vec![false; workers]),
                slot_cpus,
                pin: cfg.pin_cpus,
                nice: cfg.background_nice,
                shutdown: CancellationToken::new(),
                active: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                running: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    pub fn workers(&self) -> usize {
        self.inner.slot_cpus.len()
    }

    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            workers: self.workers(),
            running: self.inner.running.load(Ordering::Relaxed),
            waiting: self.inner.waiting.load(Ordering::Relaxed),
        }
    }

    /// Runs `job` in a free slot (waiting for one), with the encoder's
    /// threads sized to the slot.
    pub async fn run(
        &self,
        priority: Priority,
        job: &Job,
        cancel: &CancellationToken,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), RunError> {
        self.run_with(priority, cancel, progress, |threads| {
            job.args(Some(threads))
        })
        .await
    }

    /// Runs prepared arguments (subtitle extraction and other small jobs).
    pub async fn run_args(
        &self,
        priority: Priority,
        args: Vec<String>,
        cancel: &CancellationToken,
        progress: &watch::Sender<Progress>,
    ) -> Result<(), RunError> {
        self.run_with(priority, cancel, progress, |_| Ok(args))
            .await
    }

    async fn run_with(
        &self,
        priority: Priority,
        cancel: &CancellationToken,
        progress: &watch::Sender<Progress>,
        args: impl FnOnce(usize) -> Result<Vec<String>, crate::InputError>,
    ) -> Result<(), RunError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(RunError::ShuttingDown);
        }
        inner.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Counter(&inner.waiting);
        // Cancel-safety: dropping while waiting releases nothing we hold.
        let permits = tokio::select! {
            p = acquire(inner, priority) => p,
            _ = cancel.cancelled() => return Err(RunError::Cancelled),
            _ = inner.shutdown.cancelled() => return Err(RunError::ShuttingDown),
        };
        drop(waiting);
        let Some(_permits) = permits else {
            return Err(RunError::ShuttingDown);
        };
        let slot = Slot::take(inner);
        let cpus = &inner.slot_cpus[slot.index];
        let args = args(cpus.len())?;
        let settings = ChildSettings {
            cpus: inner.pin.then(|| cpus.clone()),
            nice: if priority == Priority::Background {
                inner.nice
            } else {
                0
            },
        };
        let token = cancel.child_token();
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        inner.active.lock().insert(id, token.clone());
        inner.running.fetch_add(1, Ordering::Relaxed);
        let _running = Registered { inner, id };
        let r = process::run(&args, &settings, &token, progress).await;
        if inner.shutdown.is_cancelled() && matches!(r, Err(RunError::Cancelled)) {
            return Err(RunError::ShuttingDown);
        }
        r
    }

    /// Kills every running ffmpeg and refuses new work; waits (up to
    /// `grace`) until their runs have returned.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        for t in self.inner.active.lock().values() {
            t.cancel();
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.inner.running.load(Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn acquire(
    inner: &Inner,
    priority: Priority,
) -> Option<(
    Option<tokio::sync::SemaphorePermit<'_>>,
    tokio::sync::SemaphorePermit<'_>,
)> {
    // Background work first takes its own (smaller) quota, so it can never
    // hold every slot.
    let bg = match priority {
        Priority::Background => Some(inner.background.acquire().await.ok()?),
        Priority::Interactive => None,
    };
    let p = inner.permits.acquire().await.ok()?;
    Some((bg, p))
}

struct Counter<'a>(&'a AtomicUsize);
impl Drop for Counter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Registered<'a> {
    inner: &'a Inner,
    id: u64,
}
impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.inner.active.lock().remove(&self.id);
        self.inner.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A claimed slot index; released on drop. A permit guarantees one is free.
struct Slot<'a> {
    inner: &'a Inner,
    index: usize,
}
impl<'a> Slot<'a> {
    fn take(inner: &'a Inner) -> Slot<'a> {
        let mut busy = inner.busy.lock();
        let index = busy
            .iter()
            .position(|b| !b)
            .expect("a permit guarantees a free slot");
        busy[index] = true;
        Slot { inner, index }
    }
}
impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.inner.busy.lock()[self.index] = false;
    }
}
