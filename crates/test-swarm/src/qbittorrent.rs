//! [`QbittorrentPeer`]: qbittorrent-nox (4.5 on Debian 12, libtorrent 2.0 inside)
//! with its own profile dir, peer socket on 127.0.0.N and WebAPI v2 on 127.0.0.1.
//!
//! Like [`crate::LibtorrentPeer`] it can connect out to a given address
//! ([`QbittorrentPeer::connect_to`], WebAPI `torrents/addPeers`), so it can serve
//! leechers that ignore loopback peers from trackers. WebUI authentication is
//! bypassed for localhost, and CSRF / host-header checks are off, in its config file.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::http;
use crate::json::{self, Json};
use crate::process::{Proc, Workdir, wait_until};
use crate::torrent::{Torrent, url_encode};
use crate::{Source, free_port};

/// A running qbittorrent-nox with one torrent. Dropping it kills the process.
#[derive(Debug)]
pub struct QbittorrentPeer {
    proc: Proc,
    addr: SocketAddr,
    webui: SocketAddr,
    info_hash: String,
}

impl QbittorrentPeer {
    /// Seeds `torrent` from `data_dir` (holding `torrent.name`), skipping the hash
    /// check. Returns once it is seeding and, if the torrent has a tracker, once an
    /// announce worked. Panics after 60 s.
    pub fn seed(
        work: &Workdir,
        torrent: &Torrent,
        data_dir: &Path,
        ip: Ipv4Addr,
    ) -> QbittorrentPeer {
        let mut p = Self::start(
            work,
            "qbittorrent-seed",
            Source::Torrent(torrent),
            data_dir,
            ip,
            true,
        );
        p.wait_torrent(Duration::from_secs(60), "qbittorrent seeding", |t| {
            num(t, "progress") >= 1.0
                && matches!(
                    state(t),
                    "uploading" | "stalledUP" | "queuedUP" | "forcedUP"
                )
        })
        .unwrap_or_else(|e| panic!("{e}"));
        if torrent.magnet.contains("&tr=") {
            let path = format!("/api/v2/torrents/trackers?hash={}", p.info_hash);
            wait_until(
                Duration::from_secs(30),
                Duration::from_millis(100),
                "qbittorrent announce",
                || {
                    p.proc.ensure_running()?;
                    let v = json::parse(&p.get(&path)?)?;
                    // status 2 = "working" (contacted successfully); DHT/PeX/LSD pseudo-entries aren't URLs.
                    Ok(v.as_array()
                        .is_some_and(|a| {
                            a.iter().any(|t| {
                                t.get("url")
                                    .and_then(Json::as_str)
                                    .is_some_and(|u| u.contains("://"))
                                    && num(t, "status") == 2.0
                            })
                        })
                        .then_some(()))
                },
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", p.proc.log_tail(2000)));
        }
        p
    }

    /// Starts downloading `src` into `out_dir`; returns once the torrent is added.
    pub fn leech<'a>(
        work: &Workdir,
        src: impl Into<Source<'a>>,
        out_dir: &Path,
        ip: Ipv4Addr,
    ) -> QbittorrentPeer {
        Self::start(work, "qbittorrent-leech", src.into(), out_dir, ip, false)
    }

    fn start(
        work: &Workdir,
        base: &str,
        src: Source<'_>,
        save: &Path,
        ip: Ipv4Addr,
        skip_check: bool,
    ) -> QbittorrentPeer {
        let name = work.unique_name(base);
        let dir = work.subdir(&name);
        fs::create_dir_all(save).unwrap_or_else(|e| panic!("mkdir {}: {e}", save.display()));
        let peer_port = free_port(ip);
        let webui_port = free_port(Ipv4Addr::LOCALHOST);
        let profile = dir.join("profile");
        let conf_dir = profile.join("qBittorrent/config");
        fs::create_dir_all(&conf_dir).expect("mkdir qbittorrent config");
        let conf = format!(
            r"[LegalNotice]
Accepted=true

[BitTorrent]
Session\DHTEnabled=false
Session\LSDEnabled=false
Session\PeXEnabled=false
Session\Port={peer_port}
Session\Interface=lo
Session\InterfaceName=lo
Session\InterfaceAddress={ip}
Session\MultiConnectionsPerIp=true
Session\BTProtocol=TCP
Session\QueueingSystemEnabled=false
Session\DefaultSavePath={save}
Session\TempPathEnabled=false
Session\AddTorrentPaused=false

[Network]
PortForwardingEnabled=false

[Preferences]
Connection\ResolvePeerCountries=false
General\UseRandomPort=false
WebUI\Address=127.0.0.1
WebUI\Port={webui_port}
WebUI\LocalHostAuth=false
WebUI\HostHeaderValidation=false
WebUI\CSRFProtection=false
",
            save = save.display()
        );
        fs::write(conf_dir.join("qBittorrent.conf"), conf).expect("write qBittorrent.conf");
        let mut cmd = Command::new("qbittorrent-nox");
        cmd.arg(format!("--profile={}", profile.display()))
            .arg(format!("--webui-port={webui_port}"))
            .current_dir(&dir);
        let proc = Proc::spawn(work, &name, cmd, &dir.join("home"));
        let info_hash = match src {
            Source::Torrent(t) => t.info_hash_hex.clone(),
            Source::Magnet(m) => magnet_hash(m),
        };
        let mut p = QbittorrentPeer {
            proc,
            addr: SocketAddr::from((ip, peer_port)),
            webui: SocketAddr::from((Ipv4Addr::LOCALHOST, webui_port)),
            info_hash,
        };
        let webui = p.webui;
        wait_until(
            Duration::from_secs(60),
            Duration::from_millis(100),
            "qbittorrent WebUI",
            || {
                p.proc.ensure_running()?;
                if TcpStream::connect_timeout(&webui, Duration::from_millis(200)).is_err() {
                    return Ok(None);
                }
                Ok(p.get("/api/v2/app/version").ok().map(|_| ()))
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", p.proc.log_tail(2000)));
        // Settings the config file cannot express reliably across versions.
        let prefs = format!(
            concat!(
                "{{\"listen_port\":{},\"upnp\":false,\"dht\":false,\"pex\":false,\"lsd\":false,",
                "\"random_port\":false,\"enable_multi_connections_from_same_ip\":true,\"bittorrent_protocol\":1,",
                "\"queueing_enabled\":false,\"max_ratio_enabled\":false,\"max_seeding_time_enabled\":false,",
                "\"current_network_interface\":\"lo\",\"current_interface_address\":\"{}\",",
                "\"up_limit\":0,\"dl_limit\":0,\"anonymous_mode\":false}}"
            ),
            peer_port, ip
        );
        p.post_form(
            "/api/v2/app/setPreferences",
            &[("json", prefs.as_bytes())],
            None,
        )
        .unwrap_or_else(|e| panic!("{name}: setPreferences: {e}"));
        let save_s = save.to_string_lossy();
        let skip = if skip_check { "true" } else { "false" };
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("savepath", save_s.as_bytes()),
            ("skip_checking", skip.as_bytes()),
            ("paused", b"false"),
            ("autoTMM", b"false"),
        ];
        let torrent_bytes;
        let file = match src {
            Source::Torrent(t) => {
                torrent_bytes = t.bytes();
                Some(("torrents", "t.torrent", &torrent_bytes[..]))
            }
            Source::Magnet(m) => {
                fields.push(("urls", m.as_bytes()));
                None
            }
        };
        p.post_form("/api/v2/torrents/add", &fields, file)
            .unwrap_or_else(|e| panic!("{name}: torrents/add: {e}"));
        p
    }

    fn get(&self, path: &str) -> Result<String, String> {
        let referer = format!("http://{}", self.webui);
        let r = http::request(
            self.webui,
            "GET",
            path,
            &[("Referer", &referer)],
            b"",
            Duration::from_secs(10),
        )?;
        if r.status != 200 {
            return Err(format!(
                "qbittorrent GET {path}: HTTP {} {}",
                r.status,
                r.text()
            ));
        }
        Ok(r.text())
    }

    /// POSTs `multipart/form-data` with text `fields` and an optional file part.
    fn post_form(
        &self,
        path: &str,
        fields: &[(&str, &[u8])],
        file: Option<(&str, &str, &[u8])>,
    ) -> Result<String, String> {
        let boundary = "----test-swarm-7f3a9c1e";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(v);
            body.extend_from_slice(b"\r\n");
        }
        if let Some((field, fname, data)) = file {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{fname}\"\r\n\
                     Content-Type: application/x-bittorrent\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        let referer = format!("http://{}", self.webui);
        let r = http::request(
            self.webui,
            "POST",
            path,
            &[("Content-Type", &ct), ("Referer", &referer)],
            &body,
            Duration::from_secs(10),
        )?;
        if r.status != 200 {
            return Err(format!(
                "qbittorrent POST {path}: HTTP {} {}",
                r.status,
                r.text()
            ));
        }
        Ok(r.text())
    }

    /// The torrent's entry from `torrents/info` (`progress`, `state`, ...).
    pub fn torrent_info(&self) -> Result<Json, String> {
        let v =
            json::parse(&self.get(&format!("/api/v2/torrents/info?hashes={}", self.info_hash))?)?;
        v.as_array()
            .and_then(|a| a.first())
            .cloned()
            .ok_or_else(|| "torrent not (yet) in qbittorrent".into())
    }

    fn wait_torrent(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Json) -> bool,
    ) -> Result<(), String> {
        let mut last = Json::Null;
        let res = wait_until(timeout, Duration::from_millis(100), what, || {
            self.proc.ensure_running()?;
            let Ok(t) = self.torrent_info() else {
                return Ok(None);
            };
            if matches!(state(&t), "error" | "missingFiles") {
                return Err(format!("qbittorrent torrent state {}", state(&t)));
            }
            let done = pred(&t);
            last = t;
            Ok(done.then_some(()))
        });
        res.map_err(|e| {
            format!(
                "{e}; last info: {last:?}\nlog tail:\n{}",
                self.proc.log_tail(1500)
            )
        })
    }

    /// Waits until the download is complete (progress 1, not checking).
    pub fn wait_complete(&mut self, timeout: Duration) -> Result<(), String> {
        self.wait_torrent(timeout, "qbittorrent download to complete", |t| {
            num(t, "progress") >= 1.0 && !state(t).starts_with("checking") && state(t) != "metaDL"
        })
    }

    /// Makes qBittorrent connect out to `addr`.
    pub fn connect_to(&self, addr: SocketAddr) {
        let body = format!(
            "hashes={}&peers={}",
            self.info_hash,
            url_encode(addr.to_string().as_bytes())
        );
        let referer = format!("http://{}", self.webui);
        let r = http::request(
            self.webui,
            "POST",
            "/api/v2/torrents/addPeers",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Referer", &referer),
            ],
            body.as_bytes(),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("addPeers: {e}"));
        assert_eq!(r.status, 200, "qbittorrent addPeers: {}", r.text());
    }

    /// The peer listen address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebAPI address (127.0.0.1:port, no authentication from localhost).
    pub fn webui_addr(&self) -> SocketAddr {
        self.webui
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}

fn num(t: &Json, k: &str) -> f64 {
    t.get(k).and_then(Json::as_f64).unwrap_or(-1.0)
}

fn state(t: &Json) -> &str {
    t.get("state").and_then(Json::as_str).unwrap_or("")
}

/// The hex info-hash in a `magnet:?xt=urn:btih:<40 hex>` link (lower-cased).
fn magnet_hash(m: &str) -> String {
    let i = m
        .find("urn:btih:")
        .map(|i| i + 9)
        .expect("magnet without urn:btih");
    let h = &m[i..(i + 40).min(m.len())];
    assert!(
        h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()),
        "only hex btih magnets are supported: {m}"
    );
    h.to_ascii_lowercase()
}
