//! `riptide download` against real BitTorrent clients on loopback.
//!
//! Named `swarm_*` so nextest runs these in the `real-peers` group. Each
//! test starts its own tracker and peers via `test-swarm` and skips with a
//! printed reason when a program is missing (scripts/test.sh installs them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use test_swarm::*;

const TIMEOUT: Duration = Duration::from_secs(240);

/// A `riptide download` process whose stderr goes to the workdir's logs.
struct Riptide {
    child: Child,
    log: PathBuf,
}

impl Riptide {
    fn start(
        work: &Workdir,
        source: &str,
        out: &Path,
        ip: std::net::Ipv4Addr,
        extra: &[String],
    ) -> Riptide {
        let log = work.logs_dir().join(work.unique_name("riptide") + ".log");
        let child = Command::new(env!("CARGO_BIN_EXE_riptide"))
            .env("RIPTIDE_LOG", "info,bt_engine=debug")
            .arg("download")
            .arg(source)
            .arg("--out")
            .arg(out)
            .arg("--bind")
            .arg(ip.to_string())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn riptide");
        Riptide { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&mut self, work: &Workdir) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > TIMEOUT {
                self.kill();
                work.dump_logs();
                panic!("riptide did not finish within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_success(&mut self, work: &Workdir) {
        let status = self.wait(work);
        if !status.success() {
            work.dump_logs();
        }
        assert!(status.success(), "riptide exited with {status}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls the log until `pred` holds.
    fn wait_log(&mut self, work: &Workdir, what: &str, pred: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !pred(&self.log()) {
            if start.elapsed() > TIMEOUT || self.child.try_wait().unwrap().is_some() {
                work.dump_logs();
                panic!("riptide never logged {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Riptide {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Eight files of odd sizes (64+ MiB), so that many pieces span two or
/// three files.
fn multi_payload(work: &Workdir) -> Payload {
    let sizes = [
        9_000_001, 5_123, 17_000_000, 300_000, 12_345_678, 1, 20_000_000, 8_500_000,
    ];
    let payload = make_payload(&work.subdir("seed"), "multi", &sizes, 11);
    assert!(payload.total_size() >= 64 << 20);
    payload
}

fn path_arg(t: &Torrent) -> &str {
    t.path.to_str().unwrap()
}

#[test]
fn swarm_multi_file_from_libtorrent_seeder() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-lt-multi");
    let payload = multi_payload(&work);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 256 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let _seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(11),
        SeedOpts::default(),
    );
    let out = work.subdir("out");
    Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(1), &[]).wait_success(&work);
    payload.assert_downloaded_to(&out);
}

#[test]
fn swarm_multi_file_from_transmission_seeder() {
    require_or_skip!("opentracker", "mktorrent", "transmission-daemon");
    let work = Workdir::new("rt-tr-multi");
    let payload = multi_payload(&work);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 1 << 20);
    tracker.allow(&torrent.info_hash_hex);
    let _seed = TransmissionPeer::seed(&work, &torrent, &payload.root, loopback_ip(12));
    tracker
        .wait_seeders(&torrent.info_hash_hex, 1, Duration::from_secs(60))
        .expect("transmission announces");
    let out = work.subdir("out");
    Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(2), &[]).wait_success(&work);
    payload.assert_downloaded_to(&out);
}

/// A magnet with only the info-hash and the tracker: the metadata comes
/// from the seeder over ut_metadata (BEP 9).
#[test]
fn swarm_magnet_via_ut_metadata() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-magnet");
    let payload = make_payload(
        &work.subdir("seed"),
        "magnet-multi",
        &[3_000_000, 1_234_567, 700_001],
        5,
    );
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let _seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(13),
        SeedOpts::default(),
    );
    let out = work.subdir("out");
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr={}",
        torrent.info_hash_hex,
        test_swarm::torrent::url_encode(tracker.announce_url().as_bytes())
    );
    Riptide::start(&work, &magnet, &out, loopback_ip(3), &[]).wait_success(&work);
    payload.assert_downloaded_to(&out);
}

/// Before it has the metadata riptide does not know what is left, and must
/// not tell the tracker "nothing" (a seed): trackers may then hand it no
/// seeds. The tracker counts it as a leecher.
#[test]
fn swarm_magnet_without_metadata_announces_as_a_leecher() {
    require_or_skip!("opentracker", "mktorrent");
    let work = Workdir::new("rt-left");
    let payload = make_payload(&work.subdir("seed"), "left.bin", &[1 << 20], 7);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr={}",
        torrent.info_hash_hex,
        test_swarm::torrent::url_encode(tracker.announce_url().as_bytes())
    );
    let _rt = Riptide::start(&work, &magnet, &work.subdir("out"), loopback_ip(8), &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (complete, incomplete) = loop {
        let counts = tracker.scrape(&torrent.info_hash_hex).unwrap_or((0, 0));
        if counts != (0, 0) || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (complete, incomplete),
        (0, 1),
        "riptide without metadata must announce as a leecher"
    );
}

/// Riptide seeds complete data to aria2c (which finds it via the tracker)
/// and to a transmission leecher (which ignores loopback peers from
/// trackers, so riptide connects out to it).
#[test]
fn swarm_seeds_to_aria2_and_transmission() {
    require_or_skip!("opentracker", "mktorrent", "aria2c", "transmission-daemon");
    let work = Workdir::new("rt-seed");
    let payload = make_payload(&work.subdir("seed"), "seeded", &[6_000_000, 2_500_003], 9);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 128 * 1024);
    tracker.allow(&torrent.info_hash_hex);

    let tr_out = work.subdir("tr-out");
    let mut tr = TransmissionPeer::leech(&work, &torrent, &tr_out, loopback_ip(31));
    let tr_addr: SocketAddr = tr.listen_addr();
    // Seed from the payload's own folder: riptide checks the files and
    // finds every piece present.
    let _seeder = Riptide::start(
        &work,
        path_arg(&torrent),
        &payload.root,
        loopback_ip(4),
        &["--seed".into(), "--peer".into(), tr_addr.to_string()],
    );
    tracker
        .wait_seeders(&torrent.info_hash_hex, 1, Duration::from_secs(60))
        .expect("riptide announces as a seeder");
    let aria_out = work.subdir("aria-out");
    let mut aria = Aria2Peer::leech(&work, &torrent, &aria_out, loopback_ip(32), 0);
    aria.wait_complete(TIMEOUT).unwrap_or_else(|e| {
        work.dump_logs();
        panic!("aria2c: {e}")
    });
    tr.wait_complete(TIMEOUT).unwrap_or_else(|e| {
        work.dump_logs();
        panic!("transmission: {e}")
    });
    payload.assert_downloaded_to(&aria_out);
    payload.assert_downloaded_to(&tr_out);
}

/// SIGKILL mid-download, then restart: every piece verified before the
/// kill is kept (only pieces in flight are fetched again), and the result
/// is byte-identical.
#[test]
fn swarm_resume_after_sigkill() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-kill");
    let payload = make_payload(&work.subdir("seed"), "resume.bin", &[24 << 20], 21);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 256 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let opts = SeedOpts {
        upload_limit_bps: Some(4_000_000),
        ..SeedOpts::default()
    };
    let _seed = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(14), opts);
    let out = work.subdir("out");
    let mut first = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(5), &[]);
    let half = torrent.num_pieces() as usize / 2;
    first.wait_log(&work, "half the pieces verified", |l| {
        l.matches("piece verified").count() >= half
    });
    first.kill();
    let verified_before = first.log().matches("piece verified").count();
    assert!(
        verified_before < torrent.num_pieces() as usize,
        "download finished before the kill"
    );

    let mut second = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(5), &[]);
    second.wait_success(&work);
    let log = second.log();
    let resumed: usize = log
        .split("storage ready: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("second run logs how many pieces it resumed with");
    assert!(
        resumed >= verified_before,
        "resumed with {resumed} pieces but {verified_before} were verified before the kill"
    );
    let refetched = log.matches("piece verified").count();
    assert_eq!(resumed + refetched, torrent.num_pieces() as usize);
    payload.assert_downloaded_to(&out);
}

/// Three honest seeders and one that serves corrupt data: the download is
/// correct and the liar is banned.
#[test]
fn swarm_corrupt_peer_is_banned() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-corrupt");
    let payload = make_payload(&work.subdir("seed"), "corrupt.bin", &[8 << 20], 33);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let mut seeds = Vec::new();
    for i in 0..3 {
        seeds.push(LibtorrentPeer::seed(
            &work,
            &torrent,
            &payload.root,
            loopback_ip(41 + i),
            SeedOpts::default(),
        ));
    }
    let liar_ip = loopback_ip(45);
    let opts = SeedOpts {
        corrupt: true,
        corrupt_pieces: (0..torrent.num_pieces()).collect(),
        ..SeedOpts::default()
    };
    seeds.push(LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        liar_ip,
        opts,
    ));
    let out = work.subdir("out");
    let mut rt = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(6), &[]);
    rt.wait_success(&work);
    payload.assert_downloaded_to(&out);
    let log = rt.log();
    assert!(
        log.lines()
            .any(|l| l.contains("banning peer") && l.contains(&liar_ip.to_string())),
        "the corrupt seeder was not banned:\n{log}"
    );
    for honest in 41..44 {
        let ip = loopback_ip(honest).to_string();
        assert!(
            !log.lines()
                .any(|l| l.contains("banning peer") && l.contains(&format!("ip={ip}"))),
            "honest seeder {ip} was banned"
        );
    }
}

/// A full disk stops the download with a one-line error naming the file.
/// The target file is a symlink to /dev/full, which fails every write with
/// ENOSPC, as a full file system does.
#[test]
fn swarm_disk_full_is_reported() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    if !Path::new("/dev/full").exists() {
        eprintln!("skipping: /dev/full does not exist here");
        return;
    }
    let work = Workdir::new("rt-full");
    let payload = make_payload(&work.subdir("seed"), "full.bin", &[2 << 20], 3);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let _seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(15),
        SeedOpts::default(),
    );
    let out = work.subdir("out");
    std::os::unix::fs::symlink("/dev/full", out.join("full.bin")).unwrap();
    let mut rt = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(7), &[]);
    let status = rt.wait(&work);
    let log = rt.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("riptide: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("no space left on device"),
        "{}",
        errors[0]
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// Small two-file payload for the peer-network tests.
fn small_payload(work: &Workdir, name: &str, seed: u64) -> Payload {
    make_payload(&work.subdir("seed"), name, &[3_000_017, 1_048_576], seed)
}

/// How many "peer connected" lines of riptide's log match `pred`.
fn connected_lines(log: &str, pred: impl Fn(&str) -> bool) -> usize {
    log.lines()
        .filter(|l| l.contains("peer connected") && pred(l))
        .count()
}

/// Issue 7, MSE/PE outgoing: riptide in `require` mode downloads from a
/// libtorrent seeder that forces RC4 both ways (pe_forced, pe_rc4).
#[test]
fn swarm_encrypted_download_from_forced_libtorrent() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-mse-out");
    let payload = small_payload(&work, "mse-out", 71);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let opts = SeedOpts {
        net: LtNet {
            encryption_forced: true,
            ..LtNet::default()
        },
        ..SeedOpts::default()
    };
    let seed_ip = loopback_ip(61);
    let _seed = LibtorrentPeer::seed(&work, &torrent, &payload.root, seed_ip, opts);
    let out = work.subdir("out");
    let extra = ["--encryption".to_string(), "require".to_string()];
    let mut rt = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(51), &extra);
    rt.wait_success(&work);
    payload.assert_downloaded_to(&out);
    let log = rt.log();
    assert!(
        connected_lines(&log, |l| {
            l.contains(&seed_ip.to_string())
                && l.contains("incoming=false")
                && l.contains("mse-rc4")
        }) > 0,
        "no RC4 connection to the seeder:\n{log}"
    );
    assert_eq!(
        connected_lines(&log, |l| l.contains("plain")),
        0,
        "a plain connection in require mode:\n{log}"
    );
}

/// Issue 7, MSE/PE incoming: a libtorrent seeder that forces RC4 connects
/// to riptide (it is not on the tracker), riptide detects MSE, finds the
/// torrent by its `HASH('req2', info-hash)` and downloads.
#[test]
fn swarm_encrypted_incoming_from_forced_libtorrent() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-mse-in");
    let payload = small_payload(&work, "mse-in", 72);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let rt_ip = loopback_ip(52);
    let rt_port = free_port(rt_ip);
    let out = work.subdir("out");
    let extra = [
        "--encryption".to_string(),
        "require".to_string(),
        "--port".to_string(),
        rt_port.to_string(),
    ];
    let mut rt = Riptide::start(&work, path_arg(&torrent), &out, rt_ip, &extra);
    let opts = SeedOpts {
        announce: false,
        push_to: vec![SocketAddr::from((rt_ip, rt_port))],
        net: LtNet {
            encryption_forced: true,
            ..LtNet::default()
        },
        ..SeedOpts::default()
    };
    let _seed = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(62), opts);
    rt.wait_success(&work);
    payload.assert_downloaded_to(&out);
    let log = rt.log();
    assert!(
        connected_lines(&log, |l| l.contains("incoming=true")
            && l.contains("mse-rc4"))
            > 0,
        "no incoming RC4 connection:\n{log}"
    );
}

/// Issue 7, MSE/PE against a second implementation: transmission-daemon
/// with `encryption: 2` (required) seeds to riptide in `require` mode.
#[test]
fn swarm_encrypted_download_from_transmission_requiring_it() {
    require_or_skip!("opentracker", "mktorrent", "transmission-daemon");
    let work = Workdir::new("rt-mse-tr");
    let payload = small_payload(&work, "mse-tr", 73);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let tr_ip = loopback_ip(63);
    let _seed = TransmissionPeer::seed_with(
        &work,
        &torrent,
        &payload.root,
        tr_ip,
        TrEncryption::Required,
    );
    tracker
        .wait_seeders(&torrent.info_hash_hex, 1, Duration::from_secs(60))
        .expect("transmission announces");
    let out = work.subdir("out");
    let extra = ["--encryption".to_string(), "require".to_string()];
    let mut rt = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(53), &extra);
    rt.wait_success(&work);
    payload.assert_downloaded_to(&out);
    let log = rt.log();
    assert!(
        connected_lines(&log, |l| l.contains(&tr_ip.to_string())
            && l.contains("mse-rc4"))
            > 0,
        "no RC4 connection to transmission:\n{log}"
    );
}

/// Issue 7, `require` refuses plain peers: a client that sends a plain
/// BitTorrent handshake for the torrent gets no handshake back, only the
/// connection closed. The same client is answered in `prefer` mode, so the
/// refusal is the encryption policy and not some other check.
#[test]
fn swarm_require_mode_refuses_plain_peer() {
    use std::io::{Read, Write};
    require_or_skip!("opentracker", "mktorrent");
    let work = Workdir::new("rt-mse-refuse");
    let payload = small_payload(&work, "mse-refuse", 74);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let mut handshake = b"\x13BitTorrent protocol".to_vec();
    handshake.extend_from_slice(&[0u8; 8]);
    handshake.extend_from_slice(&torrent.info_hash());
    handshake.extend_from_slice(b"-XX0001-plain-client");
    // Bytes the client gets back before the connection ends (or 30 s pass).
    let answer = |addr: SocketAddr| -> Vec<u8> {
        let start = Instant::now();
        let mut stream = loop {
            match std::net::TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    work.dump_logs();
                    panic!("riptide never listened on {addr}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(&handshake).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        // Enough to see a handshake; a refused client sees end-of-file.
        while got.len() < 68 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    };
    for (mode, ip) in [("require", 54), ("prefer", 55)] {
        let ip = loopback_ip(ip);
        let port = free_port(ip);
        let out = work.subdir(format!("out-{mode}"));
        let extra = [
            "--encryption".to_string(),
            mode.to_string(),
            "--port".to_string(),
            port.to_string(),
            "--stall-timeout".to_string(),
            "0".to_string(),
        ];
        let _rt = Riptide::start(&work, path_arg(&torrent), &out, ip, &extra);
        let got = answer(SocketAddr::from((ip, port)));
        if mode == "require" {
            assert!(
                got.is_empty(),
                "require mode answered a plain peer: {got:?}"
            );
        } else {
            assert!(
                got.starts_with(b"\x13BitTorrent protocol"),
                "prefer mode did not answer a plain peer: {got:?}"
            );
        }
    }
}

/// Issue 7, PEX (BEP 11): seeder B is on no tracker; only A connects to
/// it. A is a libtorrent leecher on the tracker, downloading slowly from B
/// (libtorrent drops seed-to-seed connections, so A must be a leecher to
/// stay connected to B). Riptide knows only A, learns B's address from A's
/// `ut_pex` messages, connects to B and downloads from it: B uploads more
/// than A ever downloaded.
#[test]
fn swarm_pex_finds_a_peer_not_on_the_tracker() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-pex");
    let payload = make_payload(&work.subdir("seed"), "pex", &[6_000_000, 2_000_003], 75);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let b_ip = loopback_ip(65);
    // B does not process PEX itself, so it never learns riptide's address:
    // a connection between them must be riptide's.
    let mut b = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        b_ip,
        SeedOpts {
            announce: false,
            ..SeedOpts::default()
        },
    );
    let b_addr = b.listen_addr();
    let mut a = LibtorrentPeer::leech(
        &work,
        &torrent,
        &work.subdir("a-out"),
        loopback_ip(64),
        LeechOpts {
            download_limit_bps: Some(20_000),
            connect_to: vec![b_addr],
            net: LtNet {
                pex: true,
                ..LtNet::default()
            },
            ..LeechOpts::default()
        },
    );
    a.wait_for(Duration::from_secs(30), "A to connect to B", |s| {
        s.peers.iter().any(|p| p == &b_addr.to_string()) && s.announces > 0
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let out = work.subdir("out");
    let mut rt = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(56), &[]);
    rt.wait_success(&work);
    payload.assert_downloaded_to(&out);
    let log = rt.log();
    assert!(
        log.contains("peers learned through PEX"),
        "riptide learned nothing through PEX:\n{log}"
    );
    assert!(
        connected_lines(&log, |l| l.contains(&format!("addr={b_addr} "))
            && l.contains("incoming=false"))
            > 0,
        "riptide never connected to B at {b_addr}:\n{log}"
    );
    let a_status = a.status();
    let b_status = b
        .wait_for(Duration::from_secs(10), "B's status", |_| true)
        .unwrap();
    assert!(
        b_status.total_payload_upload > a_status.total_payload_download,
        "B uploaded no more than A downloaded: riptide got nothing from B ({b_status:?}, {a_status:?})"
    );
}

/// Set in the copy of a test that runs inside its own network namespace.
const NETNS_ENV: &str = "RIPTIDE_TEST_IN_NETNS";

/// Runs `test` of this binary again inside a new network namespace whose
/// only interface is `lo`, with multicast routed to it, so that multicast
/// (LSD) never leaves the machine. Returns false when this already is
/// that copy (the caller then runs the test body).
fn rerun_in_own_netns(test: &str) -> bool {
    if std::env::var_os(NETNS_ENV).is_some() {
        return false;
    }
    let probe = Command::new("unshare")
        .args(["--net", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        let why = "skipping: cannot create a network namespace (unshare --net needs root)";
        if std::env::var(STRICT_ENV).is_ok_and(|v| v == "1") {
            panic!("{why} [{STRICT_ENV}=1 makes this an error]");
        }
        eprintln!("{why}");
        return true;
    }
    let status = Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            "ip link set lo up && ip link set lo multicast on \
             && ip route add 239.0.0.0/8 dev lo && exec \"$0\" \"$@\"",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .status()
        .expect("run the test in a network namespace");
    assert!(status.success(), "{test} failed in its network namespace");
    true
}

/// Issue 7, LSD (BEP 14): a libtorrent seeder on no tracker and riptide
/// find each other by multicast announces (both directions are checked:
/// libtorrent parses riptide's announce, riptide parses libtorrent's), and
/// riptide downloads. Runs in a network namespace of its own (only `lo`),
/// so no datagram reaches a real network.
#[test]
fn swarm_lsd_finds_a_local_peer() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT, "unshare", "ip");
    if rerun_in_own_netns("swarm_lsd_finds_a_local_peer") {
        return;
    }
    let work = Workdir::new("rt-lsd");
    let payload = small_payload(&work, "lsd", 76);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let lt_ip = loopback_ip(66);
    let rt_ip = loopback_ip(57);
    let seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        lt_ip,
        SeedOpts {
            announce: false,
            net: LtNet {
                lsd: true,
                ..LtNet::default()
            },
            ..SeedOpts::default()
        },
    );
    let out = work.subdir("out");
    // `--seed` keeps riptide running after the download, so it hears the
    // seeder's next announce even when the seeder found it first.
    let mut rt = Riptide::start(
        &work,
        path_arg(&torrent),
        &out,
        rt_ip,
        &["--lsd".to_string(), "--seed".to_string()],
    );
    rt.wait_log(&work, "the download to finish", |l| l.contains("done: "));
    payload.assert_downloaded_to(&out);
    rt.wait_log(&work, "the seeder found by LSD", |l| {
        l.lines().any(|l| {
            l.contains("peer found by local service discovery") && l.contains(&lt_ip.to_string())
        })
    });
    let lt_log = std::fs::read_to_string(seed.proc().log_path()).unwrap_or_default();
    assert!(
        lt_log
            .lines()
            .any(|l| l.contains("local service discovery") && l.contains(&rt_ip.to_string())),
        "libtorrent never received riptide's LSD announce:\n{lt_log}"
    );
}

/// Issue 7, DHT (BEP 5): a magnet with no tracker completes through a DHT
/// of three libtorrent nodes on 127.0.0.x that bootstrap off each other;
/// riptide joins through two of them (`--dht-bootstrap`), finds the seeds
/// with `get_peers`, downloads, and keeps its routing table with the
/// resume data. Every node is on loopback; none has a public bootstrap.
#[test]
fn swarm_trackerless_magnet_through_local_dht() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-dht");
    let payload = small_payload(&work, "dht", 77);
    // The torrent names a tracker that nobody runs; the magnet has none.
    let torrent = make_torrent(&payload, "http://127.0.0.1:1/announce", 64 * 1024);
    let mut nodes: Vec<LibtorrentPeer> = Vec::new();
    for ip in [67u8, 68, 69] {
        let bootstrap: Vec<SocketAddr> = nodes.iter().map(LibtorrentPeer::listen_addr).collect();
        nodes.push(LibtorrentPeer::seed(
            &work,
            &torrent,
            &payload.root,
            loopback_ip(ip),
            SeedOpts {
                announce: false,
                net: LtNet {
                    dht_nodes: Some(bootstrap),
                    ..LtNet::default()
                },
                ..SeedOpts::default()
            },
        ));
    }
    for n in &mut nodes {
        n.wait_for(Duration::from_secs(60), "a DHT routing table", |s| {
            s.dht_nodes >= 1
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = work.subdir("out");
    let magnet = format!("magnet:?xt=urn:btih:{}", torrent.info_hash_hex);
    let mut extra = Vec::new();
    for n in &nodes[..2] {
        extra.push("--dht-bootstrap".to_string());
        extra.push(n.listen_addr().to_string());
    }
    let mut rt = Riptide::start(&work, &magnet, &out, loopback_ip(58), &extra);
    rt.wait_success(&work);
    payload.assert_downloaded_to(&out);
    let log = rt.log();
    assert!(
        log.contains("peers found on the DHT"),
        "riptide found no peer on the DHT:\n{log}"
    );
    let saved = std::fs::read_to_string(out.join(".riptide").join("dht-nodes"))
        .expect("the DHT routing table is saved with the resume data");
    let saved: Vec<&str> = saved.lines().skip(1).collect();
    assert!(!saved.is_empty(), "no node saved");
    for n in saved {
        let addr: SocketAddr = n.parse().unwrap();
        assert!(
            addr.ip().is_loopback(),
            "a non-loopback node was saved: {addr}"
        );
    }
}

/// Issue 7, hybrid torrents (BEP 52): a v1+v2 hybrid `.torrent` made by
/// libtorrent (with BEP 47 pad files between the files) downloads over the
/// v1 info-hash from a libtorrent seeder and verifies; no pad file is
/// written.
#[test]
fn swarm_hybrid_torrent_made_by_libtorrent() {
    require_or_skip!("opentracker", LIBTORRENT);
    let work = Workdir::new("rt-hybrid");
    let payload = make_payload(
        &work.subdir("seed"),
        "hybrid",
        &[3_000_017, 1_048_576, 77_777],
        78,
    );
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_hybrid_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let _seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(70),
        SeedOpts::default(),
    );
    let out = work.subdir("out");
    let mut rt = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(59), &[]);
    rt.wait_success(&work);
    payload.assert_downloaded_to(&out);
    assert!(
        !out.join("hybrid").join(".pad").exists(),
        "pad files were written"
    );
}

/// Issue 7, web seeds (BEP 19): a torrent whose only source is an HTTP
/// server (`url-list`, no tracker, no peer) downloads through range
/// requests and verifies. The name has a space, so URLs are
/// percent-encoded.
#[test]
fn swarm_web_seed_only_torrent_downloads() {
    require_or_skip!("mktorrent");
    let work = Workdir::new("rt-webseed");
    let payload = make_payload(
        &work.subdir("seed"),
        "web seed",
        &[3_000_017, 1_048_576, 99],
        79,
    );
    let server = FileServer::start(&payload.root, loopback_ip(71));
    let torrent = make_web_seed_torrent(&payload, &server.url(), 64 * 1024);
    let out = work.subdir("out");
    let mut rt = Riptide::start(&work, path_arg(&torrent), &out, loopback_ip(60), &[]);
    rt.wait_success(&work);
    payload.assert_downloaded_to(&out);
    assert!(
        server.range_requests() > 0,
        "the web seed answered no range request"
    );
}
