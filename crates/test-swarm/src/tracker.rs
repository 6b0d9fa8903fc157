//! [`Tracker`]: opentracker on 127.0.0.1, HTTP and UDP on one free port, with a
//! whitelist.
//!
//! Debian's opentracker is built in whitelist mode: it only tracks listed info-hashes
//! and answers everything else with "Requested download is not authorized". It
//! drops root privileges to `nobody`, so the whitelist (and the directories above
//! it) must be world-readable. Hashes can be added while it runs: [`Tracker::allow`]
//! rewrites the file, sends SIGHUP (opentracker reloads the list in a worker
//! thread) and polls until an announce for the hash is accepted. That solves the
//! chicken-and-egg of needing the announce URL to make the torrent and the
//! torrent's hash to start the tracker.
//!
//! opentracker's announce interval is about 30 minutes, so a peer that announced
//! before any seeder did will not hear of one for a long time: start seeders first
//! (the seeder fixtures return only after their first successful announce), or use
//! [`Tracker::wait_seeders`].

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::bencode::{self, Value};
use crate::http;
use crate::process::{Proc, Workdir, wait_until};
use crate::torrent::url_encode;

/// A running opentracker. Dropping it kills the process.
#[derive(Debug)]
pub struct Tracker {
    proc: Mutex<Proc>,
    addr: SocketAddr,
    whitelist: PathBuf,
    hashes: Mutex<Vec<String>>,
}

impl Tracker {
    /// Starts opentracker with `info_hashes` (hex) whitelisted; more can be added
    /// with [`Tracker::allow`]. Panics if it does not answer (and accept the listed
    /// hashes) within 10 s.
    pub fn start(work: &Workdir, info_hashes: &[&str]) -> Tracker {
        let name = work.unique_name("opentracker");
        let dir = work.subdir(&name);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod tracker dir");
        let whitelist = dir.join("whitelist.txt");
        let hashes: Vec<String> = info_hashes.iter().map(|h| h.to_ascii_lowercase()).collect();
        write_whitelist(&whitelist, &hashes);
        let ip = Ipv4Addr::LOCALHOST;
        let port = crate::free_port(ip);
        let mut cmd = Command::new("opentracker");
        cmd.args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
            "-w",
        ])
        .arg(&whitelist)
        // Absolute whitelist path: opentracker chdir()s to / once started.
        .current_dir(&dir);
        let mut proc = Proc::spawn(work, &name, cmd, &dir.join("home"));
        let addr = SocketAddr::from((ip, port));
        // opentracker binds (so TCP connects succeed) before it drops privileges and
        // sets up the whitelist thread, which also blocks SIGHUP; a SIGHUP before that
        // kills it. Only an HTTP answer shows that setup is done.
        wait_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            "opentracker to answer HTTP",
            || {
                proc.ensure_running()?;
                Ok(
                    http::request(addr, "GET", "/scrape", &[], b"", Duration::from_secs(1))
                        .ok()
                        .map(|_| ()),
                )
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", proc.log_tail(2000)));
        let tracker = Tracker {
            proc: Mutex::new(proc),
            addr,
            whitelist,
            hashes: Mutex::new(hashes.clone()),
        };
        for h in &hashes {
            tracker.wait_accepted(h).unwrap_or_else(|e| panic!("{e}"));
        }
        tracker
    }

    /// `http://127.0.0.1:<port>/announce`
    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// `udp://127.0.0.1:<port>/announce` (same port, BEP 15).
    pub fn udp_announce_url(&self) -> String {
        format!("udp://{}/announce", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Process id (= process group id) of opentracker.
    pub fn pid(&self) -> u32 {
        self.proc.lock().unwrap_or_else(|e| e.into_inner()).pid()
    }

    /// Whitelists another info-hash (hex) and waits until opentracker accepts it.
    pub fn allow(&self, info_hash_hex: &str) {
        let h = info_hash_hex.to_ascii_lowercase();
        {
            let mut hashes = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
            if !hashes.contains(&h) {
                hashes.push(h.clone());
            }
            write_whitelist(&self.whitelist, &hashes);
        }
        let pid = self.proc.lock().unwrap_or_else(|e| e.into_inner()).pid();
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as i32, libc::SIGHUP);
        }
        self.wait_accepted(&h).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Polls until opentracker accepts announces for `hash` (its whitelist is
    /// (re)loaded by a worker thread, asynchronously to our signal or start).
    fn wait_accepted(&self, hash: &str) -> Result<(), String> {
        wait_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            "opentracker to load its whitelist",
            || {
                self.proc
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .ensure_running()?;
                probe(self.addr, hash)
            },
        )
    }

    /// `(complete, incomplete)` peer counts for a hash, from `/scrape`.
    pub fn scrape(&self, info_hash_hex: &str) -> Result<(u64, u64), String> {
        let raw = hex_to_bytes(info_hash_hex);
        let path = format!("/scrape?info_hash={}", url_encode(&raw));
        let r = http::request(self.addr, "GET", &path, &[], b"", Duration::from_secs(5))?;
        let v = bencode::decode(&r.body)?;
        let entry = v
            .get("files")
            .and_then(Value::as_dict)
            .and_then(|d| d.get(&raw[..]));
        let count = |k: &str| {
            entry
                .and_then(|e| e.get(k))
                .and_then(Value::as_int)
                .unwrap_or(0) as u64
        };
        Ok((count("complete"), count("incomplete")))
    }

    /// Waits until the tracker counts at least `n` seeders for the hash.
    pub fn wait_seeders(
        &self,
        info_hash_hex: &str,
        n: u64,
        timeout: Duration,
    ) -> Result<(), String> {
        wait_until(
            timeout,
            Duration::from_millis(100),
            &format!("{n} seeder(s) on the tracker"),
            || {
                self.proc
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .ensure_running()?;
                Ok(self
                    .scrape(info_hash_hex)
                    .ok()
                    .filter(|(c, _)| *c >= n)
                    .map(|_| ()))
            },
        )
    }
}

/// Announces a throw-away *leecher* (port 1) for `hash` and, if accepted, removes it
/// again with `event=stopped`. `Some(())` once the hash is whitelisted. (A `stopped`
/// announce alone proves nothing: opentracker answers it without checking the
/// whitelist. A leecher, unlike a seeder, leaves `complete` counts alone.)
fn probe(addr: SocketAddr, hash: &str) -> Result<Option<()>, String> {
    let ih = url_encode(&hex_to_bytes(hash));
    let q = |event: &str| {
        format!(
            "/announce?info_hash={ih}&peer_id=-TS0001-probe0000000&port=1&uploaded=0&downloaded=0&left=1&compact=1{event}"
        )
    };
    let r = http::request(addr, "GET", &q(""), &[], b"", Duration::from_secs(2))?;
    if r.text().contains("failure reason") {
        return Ok(None);
    }
    http::request(
        addr,
        "GET",
        &q("&event=stopped"),
        &[],
        b"",
        Duration::from_secs(2),
    )?;
    Ok(Some(()))
}

fn write_whitelist(path: &std::path::Path, hashes: &[String]) {
    let text: String = hashes.iter().map(|h| format!("{h}\n")).collect();
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod whitelist");
}

fn hex_to_bytes(h: &str) -> Vec<u8> {
    assert_eq!(h.len(), 40, "info-hash must be 40 hex digits: {h:?}");
    (0..20)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex info-hash"))
        .collect()
}
