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
