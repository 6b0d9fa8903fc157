//! [`LibtorrentPeer`]: a libtorrent 2.0 seeder or leecher driven by `py/lt_peer.py`
//! under Debian's `/usr/bin/python3` (python3-libtorrent).
//!
//! libtorrent is the reference implementation most of our engine notes cite, and it
//! is the only reference client here that can *connect out* to an address we give
//! it at run time (`connect_to`), which Transmission leechers need (they drop
//! loopback peers learned from a tracker).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Proc, Workdir, wait_until};
use crate::torrent::{Torrent, json_str};
use crate::{PYTHON, Source, free_port};

const SCRIPT: &str = include_str!("../py/lt_peer.py");

/// Writes the embedded driver script into `dir` and returns its path.
pub(crate) fn write_script(dir: &Path) -> PathBuf {
    let p = dir.join("lt_peer.py");
    fs::write(&p, SCRIPT).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// Options for [`LibtorrentPeer::seed`].
#[derive(Debug, Clone)]
pub struct SeedOpts {
    /// Upload limit in bytes/s (applies to loopback peers too).
    pub upload_limit_bps: Option<u64>,
    /// Addresses this seeder connects out to (e.g. a Transmission or riptide leecher).
    /// More can be added later with [`LibtorrentPeer::connect_to`].
    pub push_to: Vec<SocketAddr>,
    /// Serve a corrupted copy of the data: the payload is copied into the peer's own
    /// directory, one byte is flipped in each of [`SeedOpts::corrupt_pieces`] (or, if
    /// empty, pieces 0, the middle one and the last), and libtorrent is told it has
    /// every piece without hashing anything.
    pub corrupt: bool,
    /// Which pieces to corrupt when `corrupt` is set (empty = default choice).
    pub corrupt_pieces: Vec<u32>,
    /// Announce to the torrent's tracker (default true). When false the seeder is
    /// reachable only through `push_to` / `listen_addr()`.
    pub announce: bool,
    /// Network features off by default (encryption, PEX, DHT).
    pub net: LtNet,
}

/// libtorrent features a test can switch on; all off by default, so that who
/// talks to whom stays explicit.
#[derive(Debug, Clone, Default)]
pub struct LtNet {
    /// MSE/PE forced both ways, RC4 only (`pe_forced`, `pe_rc4`): plain peers are
    /// refused.
    pub encryption_forced: bool,
    /// ut_pex (BEP 11) for the torrent.
    pub pex: bool,
    /// Local service discovery (BEP 14). It multicasts to the LAN: only in a
    /// network namespace the test made itself (see riptide's LSD test).
    pub lsd: bool,
    /// DHT on, bootstrapping only from these nodes (may be empty: a first node
    /// that others bootstrap from). `None`: DHT off. Loopback addresses only.
    pub dht_nodes: Option<Vec<SocketAddr>>,
}

impl Default for SeedOpts {
    fn default() -> Self {
        SeedOpts {
            upload_limit_bps: None,
            push_to: Vec::new(),
            corrupt: false,
            corrupt_pieces: Vec::new(),
            announce: true,
            net: LtNet::default(),
        }
    }
}

/// Options for [`LibtorrentPeer::leech`].
#[derive(Debug, Clone)]
pub struct LeechOpts {
    pub download_limit_bps: Option<u64>,
    pub upload_limit_bps: Option<u64>,
    /// Peers to connect out to (in addition to what the tracker returns).
    pub connect_to: Vec<SocketAddr>,
    /// Announce to the tracker(s) of the torrent / magnet (default true).
    pub announce: bool,
    /// Download pieces in order.
    pub sequential: bool,
    /// Network features off by default (encryption, PEX, DHT).
    pub net: LtNet,
}

impl Default for LeechOpts {
    fn default() -> Self {
        LeechOpts {
            download_limit_bps: None,
            upload_limit_bps: None,
            connect_to: Vec::new(),
            announce: true,
            sequential: false,
            net: LtNet::default(),
        }
    }
}

/// One snapshot of the peer's state, from its status file.
#[derive(Debug, Clone, Default)]
pub struct LtStatus {
    pub state: String,
    pub progress: f64,
    pub is_seeding: bool,
    pub has_metadata: bool,
    pub num_peers: u32,
    /// Addresses of connected peers.
    pub peers: Vec<String>,
    /// Number of pieces that failed their hash check here.
    pub hash_failures: u64,
    /// Peers this libtorrent banned (e.g. for sending corrupt data).
    pub bans: u64,
    /// Successful tracker announces.
    pub announces: u64,
    pub tracker_errors: u64,
    pub total_payload_upload: u64,
    pub total_payload_download: u64,
    /// Torrent or file error reported by libtorrent, empty if none.
    pub error: String,
    /// Nodes in the DHT routing table (0 with DHT off).
    pub dht_nodes: u64,
}

impl LtStatus {
    fn parse(text: &str) -> LtStatus {
        let kv: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        LtStatus {
            state: kv.get("state").unwrap_or(&"").to_string(),
            progress: kv
                .get("progress")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
            is_seeding: num("is_seeding") == 1,
            has_metadata: num("has_metadata") == 1,
            num_peers: num("num_peers") as u32,
            peers: kv
                .get("peers")
                .map(|p| {
                    p.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            hash_failures: num("hash_failures"),
            bans: num("bans"),
            announces: num("announces"),
            tracker_errors: num("tracker_errors"),
            total_payload_upload: num("total_payload_upload"),
            total_payload_download: num("total_payload_download"),
            error: kv.get("error").unwrap_or(&"").to_string(),
            dht_nodes: num("dht_nodes"),
        }
    }
}

/// A running libtorrent session with one torrent. Dropping it kills the process.
#[derive(Debug)]
pub struct LibtorrentPeer {
    proc: Proc,
    addr: SocketAddr,
    save_path: PathBuf,
    status_file: PathBuf,
    connect_file: PathBuf,
    corrupted: Vec<u32>,
}

impl LibtorrentPeer {
    /// Seeds `torrent` from `data_dir` (the directory holding `torrent.name`).
    ///
    /// Returns once the torrent is seeding and, if `opts.announce`, once the tracker
    /// has accepted an announce, so leechers started afterwards find it. Panics with
    /// the log tail if that takes more than 30 s.
    pub fn seed(
        work: &Workdir,
        torrent: &Torrent,
        data_dir: &Path,
        ip: Ipv4Addr,
        opts: SeedOpts,
    ) -> LibtorrentPeer {
        let name = work.unique_name("lt-seed");
        let dir = work.subdir(&name);
        let mut corrupted = Vec::new();
        let save_path = if opts.corrupt {
            corrupted = if opts.corrupt_pieces.is_empty() {
                let n = torrent.num_pieces();
                let mut v = vec![0, n / 2, n - 1];
                v.dedup();
                v
            } else {
                opts.corrupt_pieces.clone()
            };
            let copy = dir.join("data");
            torrent.write_corrupt_copy(data_dir, &copy, &corrupted);
            copy
        } else {
            data_dir.to_path_buf()
        };
        let cfg = Config {
            role: "seed",
            source: Source::Torrent(torrent),
            save_path: &save_path,
            ip,
            upload_limit: opts.upload_limit_bps,
            download_limit: None,
            announce: opts.announce,
            trust_have_all: opts.corrupt,
            sequential: false,
            net: &opts.net,
        };
        let mut peer = Self::start(work, &name, &dir, cfg, &opts.push_to);
        peer.corrupted = corrupted;
        let announce = opts.announce && torrent_has_tracker(torrent);
        peer.wait_for(Duration::from_secs(30), "seeding (and announced)", |s| {
            s.is_seeding && (!announce || s.announces > 0)
        })
        .unwrap_or_else(|e| panic!("libtorrent seeder: {e}"));
        peer
    }

    /// Starts downloading `src` (a [`Torrent`] or a magnet) into `out_dir`; returns
    /// as soon as the peer listens. Use [`LibtorrentPeer::wait_complete`].
    pub fn leech<'a>(
        work: &Workdir,
        src: impl Into<Source<'a>>,
        out_dir: &Path,
        ip: Ipv4Addr,
        opts: LeechOpts,
    ) -> LibtorrentPeer {
        let name = work.unique_name("lt-leech");
        let dir = work.subdir(&name);
        fs::create_dir_all(out_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", out_dir.display()));
        let cfg = Config {
            role: "leech",
            source: src.into(),
            save_path: out_dir,
            ip,
            upload_limit: opts.upload_limit_bps,
            download_limit: opts.download_limit_bps,
            announce: opts.announce,
            trust_have_all: false,
            sequential: opts.sequential,
            net: &opts.net,
        };
        Self::start(work, &name, &dir, cfg, &opts.connect_to)
    }

    fn start(
        work: &Workdir,
        name: &str,
        dir: &Path,
        cfg: Config<'_>,
        connect: &[SocketAddr],
    ) -> LibtorrentPeer {
        let script = write_script(dir);
        let port = free_port(cfg.ip);
        let status_file = dir.join("status.txt");
        let connect_file = dir.join("connect.txt");
        let mut text = String::new();
        for a in connect {
            text.push_str(&format!("{a}\n"));
        }
        fs::write(&connect_file, text).expect("write connect file");
        let (torrent, magnet) = match cfg.source {
            Source::Torrent(t) => (json_str(&t.path.to_string_lossy()), "null".to_string()),
            Source::Magnet(m) => ("null".to_string(), json_str(m)),
        };
        let json = format!(
            concat!(
                "{{\"role\":\"{}\",\"torrent\":{},\"magnet\":{},\"save_path\":{},\"ip\":\"{}\",\"port\":{},",
                "\"upload_limit\":{},\"download_limit\":{},\"announce\":{},\"trust_have_all\":{},",
                "\"sequential\":{},\"status_file\":{},\"connect_file\":{},\"parent_pid\":{},\"max_life\":3600,",
                "\"encryption\":{},\"pex\":{},\"lsd\":{},\"dht_nodes\":{}}}"
            ),
            cfg.role,
            torrent,
            magnet,
            json_str(&cfg.save_path.to_string_lossy()),
            cfg.ip,
            port,
            cfg.upload_limit.unwrap_or(0),
            cfg.download_limit.unwrap_or(0),
            cfg.announce,
            cfg.trust_have_all,
            cfg.sequential,
            json_str(&status_file.to_string_lossy()),
            json_str(&connect_file.to_string_lossy()),
            std::process::id(),
            if cfg.net.encryption_forced {
                "\"forced\""
            } else {
                "null"
            },
            cfg.net.pex,
            cfg.net.lsd,
            match &cfg.net.dht_nodes {
                None => "null".to_string(),
                Some(nodes) => format!(
                    "[{}]",
                    nodes
                        .iter()
                        .map(|n| json_str(&n.to_string()))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            },
        );
        let mut cmd = Command::new(PYTHON);
        cmd.arg("-u").arg(&script).arg(json).current_dir(dir);
        let mut proc = Proc::spawn(work, name, cmd, &dir.join("home"));
        // Ready = the status file exists (written after listen + add_torrent).
        let sf = status_file.clone();
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(50),
            "libtorrent peer to start",
            || {
                proc.ensure_running()?;
                Ok(sf.exists().then_some(()))
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", proc.log_tail(2000)));
        LibtorrentPeer {
            proc,
            addr: SocketAddr::from((cfg.ip, port)),
            save_path: cfg.save_path.to_path_buf(),
            status_file,
            connect_file,
            corrupted: Vec::new(),
        }
    }

    /// The peer's TCP listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where this peer reads/writes the torrent's data (for a corrupt seeder: its copy).
    pub fn save_path(&self) -> &Path {
        &self.save_path
    }

    /// Pieces that this (corrupt) seeder serves with a flipped byte.
    pub fn corrupted_pieces(&self) -> &[u32] {
        &self.corrupted
    }

    /// Makes the peer connect out to `addr` (retried every 0.5 s while not connected).
    pub fn connect_to(&self, addr: SocketAddr) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(&self.connect_file)
            .expect("open connect file");
        writeln!(f, "{addr}").expect("append connect file");
    }

    /// Current status (default values until the first status write).
    pub fn status(&self) -> LtStatus {
        LtStatus::parse(&fs::read_to_string(&self.status_file).unwrap_or_default())
    }

    /// Polls the status until `pred` holds; fails on timeout, process exit, or a
    /// libtorrent error.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&LtStatus) -> bool,
    ) -> Result<LtStatus, String> {
        let res = wait_until(timeout, Duration::from_millis(100), what, || {
            self.proc.ensure_running()?;
            let s = self.status();
            if !s.error.is_empty() {
                return Err(format!("libtorrent error: {}", s.error));
            }
            Ok(pred(&s).then_some(s))
        });
        res.map_err(|e| {
            format!(
                "{}: {e}; last status {:?}\nlog tail:\n{}",
                self.proc.name(),
                self.status(),
                self.proc.log_tail(1500)
            )
        })
    }

    /// Waits until the whole torrent is downloaded and verified by libtorrent.
    pub fn wait_complete(&mut self, timeout: Duration) -> Result<(), String> {
        self.wait_for(timeout, "download to complete", |s| s.is_seeding)
            .map(|_| ())
    }

    /// The process handle (pid, log).
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Kills the peer now (dropping it does the same).
    pub fn stop(mut self) {
        self.proc.kill();
    }
}

struct Config<'a> {
    role: &'static str,
    source: Source<'a>,
    save_path: &'a Path,
    ip: Ipv4Addr,
    upload_limit: Option<u64>,
    download_limit: Option<u64>,
    announce: bool,
    trust_have_all: bool,
    sequential: bool,
    net: &'a LtNet,
}

fn torrent_has_tracker(t: &Torrent) -> bool {
    t.magnet.contains("&tr=")
}
