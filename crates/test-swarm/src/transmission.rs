//! [`TransmissionPeer`]: a `transmission-daemon` (3.00 on Debian 12) with its own
//! config dir, peer socket on 127.0.0.N and RPC on 127.0.0.1, driven over JSON-RPC.
//!
//! Quirks that shape this fixture:
//! - Transmission 3.00 drops 127/8 peers it learns from a tracker (its "martian"
//!   address filter), so a Transmission **leecher** only ever gets data from peers
//!   that connect to it: have a libtorrent seeder `connect_to(listen_addr())`, or
//!   have the engine under test connect out. Transmission RPC has no "add peer".
//! - As a **seeder** it uploads only a few MB/s on loopback: keep payloads small.
//! - It updates choke and interest state only on its 10 s rechoke timer, so data
//!   starts to flow up to ~10 s after a peer connects, in either direction. A test
//!   with Transmission on one side takes >= 10 s whatever the payload size.
//! - Its announces are bound to `bind-address-ipv4`, so the tracker lists the peer
//!   under its own 127.0.0.N, which is where it listens.
//! - The write cache is disabled (`cache-size-mb` 0) so that "100% done" means the
//!   bytes are in the files a test is about to compare.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::http;
use crate::json::{self, Json};
use crate::process::{Proc, Workdir, wait_until};
use crate::torrent::{Torrent, json_str};

/// Transmission torrent status codes (RPC `status`).
const STATUS_SEED: f64 = 6.0;

/// A running transmission-daemon with one torrent. Dropping it kills the daemon.
#[derive(Debug)]
pub struct TransmissionPeer {
    proc: Proc,
    addr: SocketAddr,
    rpc: Rpc,
    info_hash: String,
    has_tracker: bool,
}

/// Transmission's `encryption` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrEncryption {
    /// 0: plain preferred, encrypted peers accepted.
    Tolerated,
    /// 1 (Transmission's default): encrypted preferred, plain accepted.
    #[default]
    Preferred,
    /// 2: only encrypted (MSE/PE) peers.
    Required,
}

impl TrEncryption {
    fn setting(self) -> u8 {
        match self {
            TrEncryption::Tolerated => 0,
            TrEncryption::Preferred => 1,
            TrEncryption::Required => 2,
        }
    }
}

impl TransmissionPeer {
    /// Seeds `torrent` from `data_dir` (holding `torrent.name`). Transmission
    /// hash-checks the data first. Returns once it is seeding and, if the torrent
    /// has a tracker, once an announce succeeded. Panics after 60 s.
    pub fn seed(
        work: &Workdir,
        torrent: &Torrent,
        data_dir: &Path,
        ip: Ipv4Addr,
    ) -> TransmissionPeer {
        Self::seed_with(work, torrent, data_dir, ip, TrEncryption::default())
    }

    /// [`TransmissionPeer::seed`] with an encryption setting.
    pub fn seed_with(
        work: &Workdir,
        torrent: &Torrent,
        data_dir: &Path,
        ip: Ipv4Addr,
        encryption: TrEncryption,
    ) -> TransmissionPeer {
        let mut p = Self::start(work, "transmission-seed", torrent, data_dir, ip, encryption);
        let announce = p.has_tracker;
        p.wait_torrent(Duration::from_secs(60), "seeding (and announced)", |t| {
            let seeding = num(t, "status") == STATUS_SEED && num(t, "percentDone") >= 1.0;
            let announced = t
                .get("trackerStats")
                .and_then(Json::as_array)
                .is_some_and(|ts| {
                    ts.iter().any(|s| {
                        s.get("lastAnnounceSucceeded").and_then(Json::as_bool) == Some(true)
                    })
                });
            seeding && (!announce || announced)
        })
        .unwrap_or_else(|e| panic!("transmission seeder: {e}"));
        p
    }

    /// Starts downloading `torrent` into `out_dir`; returns once the torrent is added.
    /// Remember that it ignores loopback peers from the tracker (module docs).
    pub fn leech(
        work: &Workdir,
        torrent: &Torrent,
        out_dir: &Path,
        ip: Ipv4Addr,
    ) -> TransmissionPeer {
        Self::start(
            work,
            "transmission-leech",
            torrent,
            out_dir,
            ip,
            TrEncryption::default(),
        )
    }

    fn start(
        work: &Workdir,
        base: &str,
        torrent: &Torrent,
        download_dir: &Path,
        ip: Ipv4Addr,
        encryption: TrEncryption,
    ) -> TransmissionPeer {
        let name = work.unique_name(base);
        let dir = work.subdir(&name);
        let cfg_dir = dir.join("config");
        fs::create_dir_all(&cfg_dir).expect("mkdir transmission config");
        fs::create_dir_all(download_dir)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", download_dir.display()));
        let peer_port = crate::free_port(ip);
        let rpc_port = crate::free_port(Ipv4Addr::LOCALHOST);
        let settings = format!(
            r#"{{
  "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
  "port-forwarding-enabled": false, "peer-port": {peer_port}, "peer-port-random-on-start": false,
  "bind-address-ipv4": "{ip}", "bind-address-ipv6": "::1",
  "rpc-enabled": true, "rpc-port": {rpc_port}, "rpc-bind-address": "127.0.0.1",
  "rpc-authentication-required": false, "rpc-whitelist-enabled": false, "rpc-host-whitelist-enabled": false,
  "download-dir": {dl}, "incomplete-dir-enabled": false, "watch-dir-enabled": false,
  "rename-partial-files": false, "cache-size-mb": 0,
  "speed-limit-down-enabled": false, "speed-limit-up-enabled": false, "alt-speed-enabled": false,
  "ratio-limit-enabled": false, "idle-seeding-limit-enabled": false, "blocklist-enabled": false,
  "start-added-torrents": true, "message-level": 2, "queue-stalled-enabled": false,
  "download-queue-enabled": false, "seed-queue-enabled": false, "scrape-paused-torrents-enabled": false,
  "encryption": {enc}
}}"#,
            dl = json_str(&download_dir.to_string_lossy()),
            enc = encryption.setting()
        );
        fs::write(cfg_dir.join("settings.json"), settings).expect("write settings.json");
        let mut cmd = Command::new("transmission-daemon");
        cmd.arg("-f").arg("-g").arg(&cfg_dir).current_dir(&dir);
        let mut proc = Proc::spawn(work, &name, cmd, &dir.join("home"));
        let rpc = Rpc {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, rpc_port)),
            session: Default::default(),
        };
        wait_until(
            Duration::from_secs(20),
            Duration::from_millis(50),
            "transmission RPC",
            || {
                proc.ensure_running()?;
                if TcpStream::connect_timeout(&rpc.addr, Duration::from_millis(200)).is_err() {
                    return Ok(None);
                }
                Ok(rpc.call("session-get", "{}").ok().map(|_| ()))
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", proc.log_tail(2000)));
        let args = format!(
            "{{\"filename\":{},\"download-dir\":{}}}",
            json_str(&torrent.path.to_string_lossy()),
            json_str(&download_dir.to_string_lossy())
        );
        rpc.call("torrent-add", &args)
            .unwrap_or_else(|e| panic!("{name}: torrent-add: {e}"));
        TransmissionPeer {
            proc,
            addr: SocketAddr::from((ip, peer_port)),
            rpc,
            info_hash: torrent.info_hash_hex.clone(),
            has_tracker: torrent.magnet.contains("&tr="),
        }
    }

    /// The peer listen address (127.0.0.N:port).
    pub fn listen_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The RPC endpoint (for ad-hoc calls with [`TransmissionPeer::rpc_call`]).
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc.addr
    }

    /// Calls an RPC method with JSON `arguments`; returns the `arguments` of the reply.
    pub fn rpc_call(&self, method: &str, arguments_json: &str) -> Result<Json, String> {
        self.rpc.call(method, arguments_json)
    }

    /// The torrent's fields from `torrent-get` (`percentDone`, `status`, `error`, ...).
    pub fn torrent_get(&self, fields: &[&str]) -> Result<Json, String> {
        let f: Vec<String> = fields.iter().map(|s| json_str(s)).collect();
        let args = format!(
            "{{\"ids\":[\"{}\"],\"fields\":[{}]}}",
            self.info_hash,
            f.join(",")
        );
        let r = self.rpc.call("torrent-get", &args)?;
        r.get("torrents")
            .and_then(Json::as_array)
            .and_then(|a| a.first())
            .cloned()
            .ok_or_else(|| "torrent not found in transmission".to_string())
    }

    fn wait_torrent(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Json) -> bool,
    ) -> Result<(), String> {
        let fields = [
            "percentDone",
            "leftUntilDone",
            "status",
            "error",
            "errorString",
            "trackerStats",
            "peersConnected",
        ];
        let mut last = Json::Null;
        let res = wait_until(timeout, Duration::from_millis(100), what, || {
            self.proc.ensure_running()?;
            let t = self.torrent_get(&fields)?;
            // error 1 and 2 are tracker warnings/errors (expected without a tracker); 3 is local.
            if num(&t, "error") == 3.0 {
                return Err(format!(
                    "transmission error: {}",
                    t.get("errorString").and_then(Json::as_str).unwrap_or("")
                ));
            }
            let done = pred(&t);
            last = t;
            Ok(done.then_some(()))
        });
        res.map_err(|e| {
            format!(
                "{e}; last torrent-get: {last:?}\nlog tail:\n{}",
                self.proc.log_tail(1500)
            )
        })
    }

    /// Waits until every piece is downloaded and verified (`percentDone` = 1).
    pub fn wait_complete(&mut self, timeout: Duration) -> Result<(), String> {
        self.wait_torrent(timeout, "transmission download to complete", |t| {
            num(t, "percentDone") >= 1.0 && num(t, "leftUntilDone") == 0.0
        })
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}

fn num(t: &Json, k: &str) -> f64 {
    t.get(k).and_then(Json::as_f64).unwrap_or(-1.0)
}

/// JSON-RPC with Transmission's CSRF dance: a 409 reply carries the session id to
/// send with every later request.
#[derive(Debug)]
struct Rpc {
    addr: SocketAddr,
    session: std::sync::Mutex<String>,
}

impl Rpc {
    fn call(&self, method: &str, arguments_json: &str) -> Result<Json, String> {
        let body = format!("{{\"method\":\"{method}\",\"arguments\":{arguments_json}}}");
        for _ in 0..3 {
            let sid = self
                .session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let r = http::request(
                self.addr,
                "POST",
                "/transmission/rpc",
                &[
                    ("X-Transmission-Session-Id", &sid),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
                Duration::from_secs(10),
            )?;
            if r.status == 409 {
                let new = r
                    .header("x-transmission-session-id")
                    .unwrap_or("")
                    .to_string();
                *self.session.lock().unwrap_or_else(|e| e.into_inner()) = new;
                continue;
            }
            if r.status != 200 {
                return Err(format!(
                    "transmission rpc {method}: HTTP {} {}",
                    r.status,
                    r.text()
                ));
            }
            let v = json::parse(&r.text())?;
            let result = v.get("result").and_then(Json::as_str).unwrap_or("");
            if result != "success" {
                return Err(format!("transmission rpc {method}: {result}"));
            }
            return Ok(v.get("arguments").cloned().unwrap_or(Json::Null));
        }
        Err(format!(
            "transmission rpc {method}: no session id after 409s"
        ))
    }
}
