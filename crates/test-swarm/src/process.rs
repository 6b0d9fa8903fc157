//! Process lifetime for fixtures: the per-test [`Workdir`] and the [`Proc`] handle.
//!
//! Invariants every fixture relies on:
//! - each spawned program runs in its **own process group** (so a daemon that forks,
//!   or a Python helper with threads, is killed as a whole with one `kill(-pgid)`);
//! - its stdout and stderr go to `logs/<name>.log` in the workdir, never to the test's
//!   own pipes (nextest would otherwise report the test as leaky);
//! - dropping a [`Proc`] SIGKILLs its group and reaps it, which also happens while a
//!   panicking test unwinds;
//! - if the test process dies without unwinding (nextest timeout, SIGKILL), a small
//!   `/bin/sh` watchdog per workdir SIGKILLs every group still listed in
//!   `pgids.txt`. `PR_SET_PDEATHSIG` is not enough: opentracker drops privileges
//!   (which clears it) and it fires on the exit of the spawning *thread*, not process.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Set to `1` to keep every workdir (its path is printed when the test ends).
pub const KEEP_ENV: &str = "TEST_SWARM_KEEP";

/// Shell watchdog: $1 = pid of the test process, $2 = file with one pgid per line.
/// (`kill -s KILL -- -PGID` is the spelling dash's builtin accepts; `kill -KILL --`
/// is rejected by it.)
/// It exits quietly when the list file disappears (normal teardown), and kills the
/// listed groups when the test process is gone.
const WATCHDOG_SH: &str = r#"
parent=$1; list=$2
while [ -e "$list" ] && kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
[ -e "$list" ] || exit 0
while read -r pg _; do [ -n "$pg" ] && kill -s KILL -- "-$pg" 2>/dev/null; done < "$list"
rm -f "$list"
"#;

/// Bookkeeping shared by a [`Workdir`] and the processes spawned in it.
#[derive(Debug)]
pub(crate) struct Registry {
    list_file: PathBuf,
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    /// (pgid, name) of every live process group.
    groups: Vec<(i32, String)>,
    watchdog: Option<Child>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        // A panic while holding the lock must not stop later cleanup.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_list(&self, st: &RegistryState) {
        let mut text = String::new();
        for (pg, name) in &st.groups {
            let _ = writeln!(text, "{pg} {name}");
        }
        // Atomic replace, so the watchdog never reads a half-written list.
        let tmp = self.list_file.with_extension("tmp");
        if fs::write(&tmp, text).is_ok() {
            let _ = fs::rename(&tmp, &self.list_file);
        }
    }

    fn add(&self, pgid: i32, name: &str) {
        let mut st = self.lock();
        if st.watchdog.is_none() {
            // Write the list before the watchdog starts: it exits when the file is absent.
            self.write_list(&st);
            let wd = Command::new("/bin/sh")
                .arg("-c")
                .arg(WATCHDOG_SH)
                .arg("test-swarm-watchdog")
                .arg(std::process::id().to_string())
                .arg(&self.list_file)
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn();
            match wd {
                Ok(c) => st.watchdog = Some(c),
                Err(e) => eprintln!("test-swarm: cannot start watchdog /bin/sh: {e}"),
            }
        }
        st.groups.push((pgid, name.to_string()));
        self.write_list(&st);
    }

    fn remove(&self, pgid: i32) {
        let mut st = self.lock();
        st.groups.retain(|(p, _)| *p != pgid);
        self.write_list(&st);
    }

    fn shutdown(&self) {
        let mut st = self.lock();
        for (pg, _) in st.groups.drain(..) {
            kill_group(pg);
        }
        let _ = fs::remove_file(&self.list_file);
        if let Some(mut wd) = st.watchdog.take() {
            let _ = wd.kill();
            let _ = wd.wait();
        }
    }
}

/// SIGKILL a whole process group. Safe after the leader exited: the kernel does not
/// reuse a pid while it is still the id of a live group.
pub(crate) fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// A temporary directory for one test: data, configs, and `logs/` of every process.
///
/// Drop order matters: declare the `Workdir` first in a test so it is dropped last,
/// after the fixtures that log into it. When the test is panicking, `Drop` prints the
/// tail of every log to stderr (nextest shows it with the failure). Set
/// `TEST_SWARM_KEEP=1` to keep the directory.
#[derive(Debug)]
pub struct Workdir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    reg: Arc<Registry>,
}

impl Workdir {
    /// Creates `$TMPDIR/test-swarm-<label>-XXXX/` (mode 0755, because opentracker
    /// drops to user `nobody` and must still read its whitelist) with `logs/`.
    pub fn new(label: &str) -> Workdir {
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = tempfile::Builder::new()
            .prefix(&format!("test-swarm-{label}-"))
            .tempdir()
            .expect("create temporary workdir");
        let path = dir.path().to_path_buf();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod workdir");
        fs::create_dir_all(path.join("logs")).expect("create logs dir");
        let reg = Arc::new(Registry {
            list_file: path.join("pgids.txt"),
            state: Mutex::new(RegistryState::default()),
        });
        Workdir {
            dir: Some(dir),
            path,
            reg,
        }
    }

    /// The workdir itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `logs/` inside the workdir.
    pub fn logs_dir(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// Creates (if needed) and returns `<workdir>/<rel>`.
    pub fn subdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        p
    }

    /// A name not yet used by another process log or directory in this workdir:
    /// `base`, then `base-2`, `base-3`...
    pub fn unique_name(&self, base: &str) -> String {
        let mut n = 1;
        loop {
            let name = if n == 1 {
                base.to_string()
            } else {
                format!("{base}-{n}")
            };
            let log = self.logs_dir().join(format!("{name}.log"));
            if !log.exists() && !self.path.join(&name).exists() {
                return name;
            }
            n += 1;
        }
    }

    /// Keep the directory after the test (also with `TEST_SWARM_KEEP=1`).
    pub fn keep(&mut self) -> &Path {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        &self.path
    }

    /// The last `max_bytes` of every log in `logs/`, each under a header.
    pub fn logs_tail(&self, max_bytes: u64) -> String {
        let mut out = String::new();
        let mut entries: Vec<PathBuf> = fs::read_dir(self.logs_dir())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for p in entries {
            let _ = writeln!(out, "----- {} (tail) -----", p.display());
            out.push_str(&file_tail(&p, max_bytes));
            out.push('\n');
        }
        out
    }

    /// Prints the tail of each process log to stderr. Called automatically when a
    /// test panics; call it yourself before returning an error.
    pub fn dump_logs(&self) {
        eprintln!(
            "test-swarm: logs of {}:\n{}",
            self.path.display(),
            self.logs_tail(3000)
        );
    }

    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.reg.clone()
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        self.reg.shutdown();
        let panicking = std::thread::panicking();
        if panicking {
            self.dump_logs();
        }
        let keep = std::env::var(KEEP_ENV).is_ok_and(|v| v == "1");
        if keep {
            eprintln!("test-swarm: kept workdir {}", self.keep().display());
        } else if panicking {
            eprintln!(
                "test-swarm: workdir {} removed; set {KEEP_ENV}=1 to keep it",
                self.path.display()
            );
        }
    }
}

/// Last `max_bytes` of a file as lossy UTF-8 (empty if unreadable).
pub fn file_tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).trim_end().to_string()
}

/// A spawned program in its own process group, logging to `logs/<name>.log`.
/// Dropping it SIGKILLs the group.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    pgid: i32,
    log: PathBuf,
    status: Option<ExitStatus>,
    reg: Arc<Registry>,
}

impl Proc {
    /// Spawns `cmd` with stdio redirected to the log, no proxy variables, and
    /// `HOME`/`XDG_*` pointed at `home` (clients must not touch the real home).
    pub fn spawn(work: &Workdir, name: &str, mut cmd: Command, home: &Path) -> Proc {
        let log = work.logs_dir().join(format!("{name}.log"));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
        let _ = writeln!(f, "### {name}: {}", describe(&cmd));
        let f2 = f.try_clone().expect("dup log fd");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().to_ascii_lowercase().contains("proxy") {
                cmd.env_remove(&k);
            }
        }
        fs::create_dir_all(home).ok();
        cmd.env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", describe(&cmd)));
        let pgid = i32::try_from(child.id()).expect("pid fits i32");
        let reg = work.registry();
        reg.add(pgid, name);
        Proc {
            name: name.to_string(),
            child,
            pgid,
            log,
            status: None,
            reg,
        }
    }

    /// Name used for the log file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// OS pid (= process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of this process's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Last `max_bytes` of the log.
    pub fn log_tail(&self, max_bytes: u64) -> String {
        file_tail(&self.log, max_bytes)
    }

    /// Exit status if the process has exited (non-blocking).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} still running after {:.0?}; log tail:\n{}",
                    self.name,
                    timeout,
                    self.log_tail(2000)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the log until `pred(whole log)` holds; fails on timeout or exit.
    pub fn wait_log(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let log = self.log.clone();
        let res = wait_until(timeout, Duration::from_millis(50), what, || {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if pred(&text) {
                return Ok(Some(()));
            }
            self.ensure_running().map(|_| None)
        });
        res.map_err(|e| format!("{}: {e}; log tail:\n{}", self.name, self.log_tail(2000)))
    }

    /// `Err` with the log tail if the process has exited (for use inside waits).
    pub fn ensure_running(&mut self) -> Result<(), String> {
        match self.try_wait() {
            None => Ok(()),
            Some(s) => Err(format!(
                "{} exited early ({s}); log tail:\n{}",
                self.name,
                self.log_tail(2000)
            )),
        }
    }

    /// SIGKILLs the group and reaps the leader.
    pub fn kill(&mut self) {
        kill_group(self.pgid);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        self.reg.remove(self.pgid);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe(cmd: &Command) -> String {
    let q = |s: &OsStr| {
        let s = s.to_string_lossy();
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(q)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls `f` every `interval` until it yields `Some`, an error, or `timeout` passes.
/// `what` names the condition in the timeout error.
pub fn wait_until<T>(
    timeout: Duration,
    interval: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:.0?} waiting for {what}"));
        }
        std::thread::sleep(interval);
    }
}
