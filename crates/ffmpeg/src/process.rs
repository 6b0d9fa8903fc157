//! Running one ffmpeg to completion: progress from `-progress pipe:1`,
//! the tail of stderr for error messages, and a kill on cancel or drop.

use crate::progress::{Progress, ProgressParser};
use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Lines of stderr kept for the error message.
const STDERR_TAIL_LINES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] crate::InputError),
    #[error("cannot run ffmpeg (is it installed? Debian: apt-get install ffmpeg): {0}")]
    Spawn(std::io::Error),
    #[error("ffmpeg failed ({status}): {stderr}")]
    Failed { status: ExitStatus, stderr: String },
    #[error("the transcode was cancelled")]
    Cancelled,
    #[error("the transcoder is shutting down; try again after restart")]
    ShuttingDown,
}

/// Settings applied to the child just before `exec` (from the pool).
#[derive(Debug, Clone, Default)]
pub struct ChildSettings {
    /// Pin the process (and the threads it creates) to these CPUs.
    pub cpus: Option<Vec<usize>>,
    /// Added to the niceness (background work yields to playback).
    pub nice: i32,
}

/// Runs `ffmpeg args` until it exits, publishing progress on `progress`.
///
/// Cancellation: when `cancel` fires the child is killed (SIGKILL) and
/// reaped before this returns `Cancelled`; when the future is dropped, the
/// child is killed by `kill_on_drop`. Either way ffmpeg stops writing, so
/// callers must treat partial output as garbage (write to a temporary name
/// and rename only on `Ok`).
pub async fn run(
    args: &[String],
    settings: &ChildSettings,
    cancel: &CancellationToken,
    progress: &watch::Sender<Progress>,
) -> Result<(), RunError> {
    if cancel.is_cancelled() {
        return Err(RunError::Cancelled);
    }
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    apply_settings(&mut cmd, settings);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let outcome = {
        let work = async {
            let (_, tail, status) = tokio::join!(
                read_progress(stdout, progress),
                read_tail(stderr),
                child.wait()
            );
            (tail, status)
        };
        // Cancel-safety: losing `work` drops the readers only; the child
        // is killed below (or by kill_on_drop if we are dropped too).
        tokio::select! {
            r = work => Some(r),
            _ = cancel.cancelled() => None,
        }
    };
    match outcome {
        None => {
            let _ = child.kill().await;
            Err(RunError::Cancelled)
        }
        Some((tail, status)) => {
            let status = status.map_err(RunError::Spawn)?;
            if status.success() {
                Ok(())
            } else {
                Err(RunError::Failed {
                    status,
                    stderr: if tail.is_empty() {
                        "no error message".into()
                    } else {
                        tail
                    },
                })
            }
        }
    }
}

#[allow(unsafe_code)]
fn apply_settings(cmd: &mut tokio::process::Command, s: &ChildSettings) {
    if s.cpus.is_none() && s.nice == 0 {
        return;
    }
    // Built here, before fork: the pre_exec closure must not allocate.
    let set = s.cpus.as_ref().map(|cpus| {
        // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty
        // set, and CPU_SET only sets bits below CPU_SETSIZE.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in cpus.iter().filter(|c| **c < libc::CPU_SETSIZE as usize) {
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        set
    });
    let nice = s.nice;
    // SAFETY: only async-signal-safe syscalls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(set) = &set
                && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if nice != 0 {
                // Best effort: a container may forbid it, playback still works.
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            }
            Ok(())
        });
    }
}

async fn read_progress(out: impl AsyncRead + Unpin, tx: &watch::Sender<Progress>) {
    let mut lines = BufReader::new(out).lines();
    let mut parser = ProgressParser::default();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(p) = parser.line(&line) {
            tx.send_replace(p);
        }
    }
}

async fn read_tail(err: impl AsyncRead + Unpin) -> String {
    let mut lines = BufReader::new(err).lines();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    while let Ok(Some(line)) = lines.next_line().await {
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(300).collect::<String>());
    }
    tail.into_iter().collect::<Vec<_>>().join(" | ")
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the set we own; zeroed is valid.
    #[allow(unsafe_code)]
    let cpus = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect::<Vec<_>>()
    };
    if cpus.is_empty() { vec![0] } else { cpus }
}
