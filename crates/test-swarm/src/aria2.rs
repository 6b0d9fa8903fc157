//! [`Aria2Peer`]: aria2c 1.36 as a leecher (exits 0 once the download is complete
//! and verified, thanks to `--seed-time=0`) or as a seeder.
//!
//! As a seeder aria2c runs with `--bt-seed-unverified --check-integrity=false`: it
//! serves whatever bytes are on disk without hashing them, which makes it a second,
//! independent way to get a peer that serves corrupt data.
//! `--stop-with-process=<test pid>` makes it exit on its own if the test dies.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{Proc, Workdir};
use crate::torrent::Torrent;
use crate::{Source, free_port};

/// A running aria2c. Dropping it kills the process.
#[derive(Debug)]
pub struct Aria2Peer {
    proc: Proc,
    addr: SocketAddr,
}

impl Aria2Peer {
    /// Downloads `src` (a [`Torrent`] or a magnet) into `out_dir`; listens on
    /// `ip:listen_port` (0 = pick a free port). aria2c finds peers via the tracker.
    pub fn leech<'a>(
        work: &Workdir,
        src: impl Into<Source<'a>>,
        out_dir: &Path,
        ip: Ipv4Addr,
        listen_port: u16,
    ) -> Aria2Peer {
        fs::create_dir_all(out_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", out_dir.display()));
        let extra = ["--seed-time=0", "--file-allocation=none"];
        Self::start(
            work,
            "aria2-leech",
            src.into(),
            out_dir,
            ip,
            listen_port,
            &extra,
        )
    }

    /// Seeds `torrent` from `data_dir` without verifying the data (see module docs).
    /// It announces to the torrent's tracker; use `Tracker::wait_seeders` before
    /// starting leechers.
    pub fn seed(work: &Workdir, torrent: &Torrent, data_dir: &Path, ip: Ipv4Addr) -> Aria2Peer {
        let extra = [
            "--seed-ratio=0.0",
            "--bt-seed-unverified=true",
            "--check-integrity=false",
            "--file-allocation=none",
        ];
        Self::start(
            work,
            "aria2-seed",
            Source::Torrent(torrent),
            data_dir,
            ip,
            0,
            &extra,
        )
    }

    fn start(
        work: &Workdir,
        base: &str,
        src: Source<'_>,
        dir_arg: &Path,
        ip: Ipv4Addr,
        listen_port: u16,
        extra: &[&str],
    ) -> Aria2Peer {
        let name = work.unique_name(base);
        let dir = work.subdir(&name);
        let port = if listen_port == 0 {
            free_port(ip)
        } else {
            listen_port
        };
        let mut cmd = Command::new("aria2c");
        cmd.arg("--no-conf")
            .arg(format!("--dir={}", dir_arg.display()))
            .arg(format!("--interface={ip}"))
            .arg(format!("--listen-port={port}"))
            .arg(format!("--stop-with-process={}", std::process::id()))
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--summary-interval=0",
                "--console-log-level=notice",
                "--auto-file-renaming=false",
                "--allow-overwrite=true",
                "--disable-ipv6=true",
            ])
            .args(extra)
            .current_dir(&dir);
        match src {
            Source::Torrent(t) => cmd.arg(&t.path),
            Source::Magnet(m) => cmd.arg(m),
        };
        let proc = Proc::spawn(work, &name, cmd, &dir.join("home"));
        Aria2Peer {
            proc,
            addr: SocketAddr::from((ip, port)),
        }
    }

    /// The BitTorrent listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for aria2c to exit; `Ok` only for exit code 0 (download complete and
    /// every piece verified).
    pub fn wait_complete(&mut self, timeout: Duration) -> Result<(), String> {
        let st = self.proc.wait_timeout(timeout)?;
        if st.success() {
            Ok(())
        } else {
            Err(format!(
                "aria2c exited with {st}; log tail:\n{}",
                self.proc.log_tail(2000)
            ))
        }
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}
