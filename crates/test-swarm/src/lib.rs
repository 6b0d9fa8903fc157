//! Test fixtures that run **real BitTorrent programs on loopback**: opentracker,
//! libtorrent (python3-libtorrent), transmission-daemon, aria2c and qbittorrent-nox, plus
//! deterministic payloads, `.torrent` creation (mktorrent) and tree comparison.
//!
//! A typical integration test:
//!
//! ```no_run
//! use std::time::Duration;
//! use test_swarm::*;
//!
//! if let Err(why) = require(&["opentracker", "mktorrent", "aria2c", LIBTORRENT]) {
//!     eprintln!("{why}");
//!     return;
//! }
//! let work = Workdir::new("example"); // declared first, so dropped last
//! let payload = make_payload(&work.subdir("seed"), "movie", &[3 << 20, 1 << 20], 42);
//! let tracker = Tracker::start(&work, &[]);
//! let torrent = make_torrent(&payload, &tracker.announce_url(), 1 << 16);
//! tracker.allow(&torrent.info_hash_hex);
//! let _seed = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(11), SeedOpts::default());
//! let out = work.subdir("out");
//! let mut leech = Aria2Peer::leech(&work, &torrent, &out, loopback_ip(21), 0);
//! leech.wait_complete(Duration::from_secs(60)).unwrap();
//! payload.assert_downloaded_to(&out);
//! ```
//!
//! Ground rules, all enforced here rather than left to each test:
//! - every process gets its own process group and is SIGKILLed (group-wide) when
//!   its fixture drops, also while a test panics; a shell watchdog per [`Workdir`]
//!   covers the test process being killed outright (see [`process`]);
//! - every wait has a timeout and failures carry the tail of the process log; a
//!   panicking test prints the tail of every log in its workdir;
//! - only 127.0.0.0/8 is used: DHT, LSD, PEX, UPnP and NAT-PMP are off in every
//!   client unless a test switches PEX or DHT on for a libtorrent peer ([`LtNet`];
//!   its DHT then bootstraps only from the test's loopback nodes), and each peer gets its own 127.0.0.N ([`loopback_ip`]) so that
//!   per-IP logic (libtorrent's one-connection-per-IP rule, bans) behaves as on a
//!   real network.
//!
//! Fixtures do not depend on `bt-proto` or any other crate of ours: they are the
//! independent side that our code is tested against.

pub mod aria2;
pub mod bencode;
pub mod file_server;
pub mod http;
pub mod json;
pub mod libtorrent;
pub mod payload;
pub mod process;
pub mod qbittorrent;
pub mod torrent;
pub mod tracker;
pub mod transmission;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

pub use aria2::Aria2Peer;
pub use file_server::FileServer;
pub use libtorrent::{LeechOpts, LibtorrentPeer, LtNet, LtStatus, SeedOpts};
pub use payload::{Payload, assert_same_tree, compare_trees, make_payload};
pub use process::{Proc, Workdir, wait_until};
pub use qbittorrent::QbittorrentPeer;
pub use torrent::{Torrent, make_hybrid_torrent, make_torrent, make_web_seed_torrent};
pub use tracker::Tracker;
pub use transmission::{TrEncryption, TransmissionPeer};

/// The interpreter for libtorrent: Debian's python3-libtorrent is built for
/// `/usr/bin/python3`; the `python3` on PATH may be a pyenv build without it.
pub const PYTHON: &str = "/usr/bin/python3";

/// Pseudo binary name for [`require`]: `/usr/bin/python3` can `import libtorrent`.
pub const LIBTORRENT: &str = "python3-libtorrent";

/// When this variable is `1`, [`require`] panics instead of returning `Err`, so a
/// missing program fails the run instead of silently skipping. `scripts/test.sh`
/// sets it after installing the packages.
pub const STRICT_ENV: &str = "TEST_SWARM_STRICT";

/// Checks that the programs a test needs are installed. Entries are names looked
/// up on `PATH` (`opentracker`, `mktorrent`, `aria2c`, `transmission-daemon`, ...)
/// or [`LIBTORRENT`]. Returns `Err("skipping: ... (run scripts/test.sh)")` for the
/// test to print before returning early.
pub fn require(bins: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = bins.iter().copied().filter(|b| !available(b)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let msg = format!(
        "skipping: {} not installed (run scripts/test.sh, which installs the Debian packages)",
        missing.join(", ")
    );
    if std::env::var(STRICT_ENV).is_ok_and(|v| v == "1") {
        panic!("{msg} [{STRICT_ENV}=1 makes this an error]");
    }
    Err(msg)
}

/// `require(...)` or print the reason and `return` from the test.
#[macro_export]
macro_rules! require_or_skip {
    ($($bin:expr),+ $(,)?) => {
        if let Err(why) = $crate::require(&[$($bin),+]) {
            eprintln!("{why}");
            return;
        }
    };
}

fn available(bin: &str) -> bool {
    if bin == LIBTORRENT {
        return Command::new(PYTHON)
            .args(["-c", "import libtorrent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    }
    if bin.contains('/') {
        return Path::new(bin).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).is_file()))
}

/// `127.0.0.n`. Give each peer its own address (n >= 2 avoids sharing 127.0.0.1
/// with the tracker and control APIs). Linux routes all of 127/8 to `lo`.
pub fn loopback_ip(n: u8) -> Ipv4Addr {
    assert!(
        n != 0 && n != 255,
        "127.0.0.{n} is not a usable host address"
    );
    Ipv4Addr::new(127, 0, 0, n)
}

/// A port that is free for both TCP and UDP on `ip` right now.
///
/// Ports are drawn from 20000..32768, below Linux's ephemeral range, so an
/// outgoing connection cannot grab the port between this call and the server's
/// bind; the start point mixes pid, time and a counter so parallel test processes
/// rarely probe the same ports.
pub fn free_port(ip: Ipv4Addr) -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
    for _ in 0..500 {
        // xorshift step: cheap, and different sequences for different seeds.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 20000 + (x % 12768) as u16;
        let tcp = TcpListener::bind(SocketAddr::from((ip, port)));
        let udp = UdpSocket::bind(SocketAddr::from((ip, port)));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free TCP+UDP port found on {ip}");
}

/// What a leecher downloads: a `.torrent` file or a magnet link.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Torrent(&'a Torrent),
    Magnet(&'a str),
}

impl<'a> From<&'a Torrent> for Source<'a> {
    fn from(t: &'a Torrent) -> Self {
        Source::Torrent(t)
    }
}

impl<'a> From<&'a str> for Source<'a> {
    fn from(m: &'a str) -> Self {
        Source::Magnet(m)
    }
}

impl<'a> From<&'a String> for Source<'a> {
    fn from(m: &'a String) -> Self {
        Source::Magnet(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_bindable_and_loopback() {
        let ip = loopback_ip(77);
        let p = free_port(ip);
        assert!((20000..32768).contains(&p));
        TcpListener::bind((ip, p)).unwrap();
    }

    #[test]
    fn require_reports_missing() {
        // SAFETY-free: only reads the env; STRICT may be set by scripts/test.sh.
        if std::env::var(STRICT_ENV).is_ok_and(|v| v == "1") {
            return;
        }
        let e = require(&["sh", "definitely-not-a-real-binary-xyz"]).unwrap_err();
        assert!(
            e.starts_with("skipping: definitely-not-a-real-binary-xyz not installed"),
            "{e}"
        );
        assert!(require(&["sh"]).is_ok());
    }
}
