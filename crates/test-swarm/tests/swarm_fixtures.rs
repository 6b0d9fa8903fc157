//! Self-tests of the fixtures against each other, without riptide: if these fail,
//! a failing riptide interop test says nothing about riptide.
//!
//! The binary is named `swarm_*` so that `.config/nextest.toml` puts it in the
//! `real-peers` test group (at most two such tests at once on the 2-core machines).
//! Payloads are a few MiB at most; each test takes a few seconds.

use std::process::Command;
use std::time::{Duration, Instant};

use test_swarm::*;

const T: Duration = Duration::from_secs(60);

fn elapsed(start: Instant, what: &str) {
    eprintln!("{what}: {:.2?}", start.elapsed());
}

/// Our bencode reading of mktorrent's output agrees with two independent tools, and
/// the libtorrent fallback (piece sizes mktorrent refuses) makes a valid v1 torrent.
#[test]
fn torrent_info_hash_matches_reference_tools() {
    require_or_skip!("mktorrent", "transmission-show", LIBTORRENT);
    let work = Workdir::new("infohash");
    let payload = make_payload(&work.subdir("data"), "multi", &[100_000, 70_000, 33_333], 1);
    for piece in [16 * 1024, 64 * 1024] {
        let t = make_torrent(&payload, "http://127.0.0.1:1/announce", piece);
        assert_eq!(t.piece_length, piece);
        assert_eq!(t.total_size(), payload.total_size());
        assert_eq!(t.files.len(), 3);
        assert!(
            t.bad_pieces(&payload.root).is_empty(),
            "fresh torrent must verify against its payload"
        );
        assert!(t.magnet.starts_with(&format!(
            "magnet:?xt=urn:btih:{}&dn=multi&tr=http%3A%2F%2F",
            t.info_hash_hex
        )));

        let show = Command::new("transmission-show")
            .arg(&t.path)
            .output()
            .unwrap();
        let show = String::from_utf8_lossy(&show.stdout);
        assert!(
            show.contains(&format!("Hash: {}", t.info_hash_hex)),
            "transmission-show disagrees:\n{show}"
        );

        let lt = Command::new(PYTHON)
            .args([
                "-c",
                "import sys, libtorrent as lt; print(lt.torrent_info(sys.argv[1]).info_hash())",
            ])
            .arg(&t.path)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&lt.stdout).trim(), t.info_hash_hex);
    }
    let single = make_payload(&work.subdir("single"), "one.bin", &[40_000], 2);
    let t = make_torrent(&single, "", 32 * 1024);
    assert!(!t.multi_file && t.num_pieces() == 2 && !t.magnet.contains("&tr="));
    assert!(t.bad_pieces(&single.root).is_empty());
}

/// opentracker tracks exactly the whitelisted hashes, also those added later.
#[test]
fn tracker_whitelist_and_allow() {
    require_or_skip!("opentracker");
    let work = Workdir::new("whitelist");
    let (a, b) = ("aa".repeat(20), "bb".repeat(20));
    let tracker = Tracker::start(&work, &[&a]);
    let announce = |h: &str| {
        let raw: Vec<u8> = (0..20)
            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let path = format!(
            "/announce?info_hash={}&peer_id=-TS0001-111111111111&port=6881&uploaded=0&downloaded=0&left=0&compact=1",
            test_swarm::torrent::url_encode(&raw)
        );
        test_swarm::http::request(
            tracker.addr(),
            "GET",
            &path,
            &[],
            b"",
            Duration::from_secs(5),
        )
        .unwrap()
        .text()
    };
    assert!(
        !announce(&a).contains("failure reason"),
        "listed hash refused"
    );
    assert!(
        announce(&b).contains("not authorized"),
        "unlisted hash accepted"
    );
    assert_eq!(tracker.scrape(&a).unwrap(), (1, 0));
    tracker.allow(&b);
    assert!(!announce(&b).contains("failure reason"));
    assert!(tracker.udp_announce_url().starts_with("udp://127.0.0.1:"));
}

/// aria2c downloads a 2-file payload from a libtorrent seeder found via opentracker.
#[test]
fn aria2_leeches_from_libtorrent_seeder_via_tracker() {
    require_or_skip!("opentracker", "mktorrent", "aria2c", LIBTORRENT);
    let start = Instant::now();
    let work = Workdir::new("aria2-lt");
    let payload = make_payload(
        &work.subdir("seed"),
        "two-files",
        &[3 << 20, (1 << 20) + 12_345],
        7,
    );
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let _seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(11),
        SeedOpts::default(),
    );
    assert_eq!(
        tracker.scrape(&torrent.info_hash_hex).unwrap().0,
        1,
        "seeder announced as complete"
    );
    let out = work.subdir("out");
    let mut leech = Aria2Peer::leech(&work, &torrent, &out, loopback_ip(21), 0);
    leech.wait_complete(T).unwrap();
    payload.assert_downloaded_to(&out);
    elapsed(start, "aria2 <- libtorrent");
}

/// Transmission ignores loopback peers from trackers, so the libtorrent seeder
/// connects out to it (`push_to`), and the download completes.
#[test]
fn transmission_leecher_completes_when_libtorrent_pushes() {
    require_or_skip!(
        "opentracker",
        "mktorrent",
        "transmission-daemon",
        LIBTORRENT
    );
    let start = Instant::now();
    let work = Workdir::new("tr-leech");
    let payload = make_payload(&work.subdir("seed"), "single.bin", &[(2 << 20) + 777], 3);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 32 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let out = work.subdir("out");
    let mut leech = TransmissionPeer::leech(&work, &torrent, &out, loopback_ip(22));
    let opts = SeedOpts {
        push_to: vec![leech.listen_addr()],
        announce: false,
        ..SeedOpts::default()
    };
    let _seed = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(12), opts);
    leech.wait_complete(T).unwrap();
    payload.assert_downloaded_to(&out);
    elapsed(start, "transmission <- libtorrent (push)");
}

/// An aria2c seeder (found via `Tracker::wait_seeders`) serves a libtorrent leecher.
#[test]
fn libtorrent_leeches_from_aria2_seeder_via_tracker() {
    require_or_skip!("opentracker", "mktorrent", "aria2c", LIBTORRENT);
    let start = Instant::now();
    let work = Workdir::new("aria2-seed");
    let payload = make_payload(&work.subdir("seed"), "a", &[700_000, 1 << 20], 10);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 32 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let _seed = Aria2Peer::seed(&work, &torrent, &payload.root, loopback_ip(19));
    tracker.wait_seeders(&torrent.info_hash_hex, 1, T).unwrap();
    let out = work.subdir("out");
    let mut leech =
        LibtorrentPeer::leech(&work, &torrent, &out, loopback_ip(29), LeechOpts::default());
    leech.wait_complete(T).unwrap();
    payload.assert_downloaded_to(&out);
    elapsed(start, "libtorrent <- aria2 (tracker)");
}

/// A Transmission seeder announces from its own 127.0.0.N and serves a libtorrent
/// leecher that found it through the tracker.
#[test]
fn libtorrent_leeches_from_transmission_seeder_via_tracker() {
    require_or_skip!(
        "opentracker",
        "mktorrent",
        "transmission-daemon",
        LIBTORRENT
    );
    let start = Instant::now();
    let work = Workdir::new("tr-seed");
    let payload = make_payload(&work.subdir("seed"), "dir", &[1 << 20, 300_000, 5], 4);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 32 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let seed = TransmissionPeer::seed(&work, &torrent, &payload.root, loopback_ip(13));
    assert_eq!(seed.listen_addr().ip(), loopback_ip(13));
    let out = work.subdir("out");
    let mut leech =
        LibtorrentPeer::leech(&work, &torrent, &out, loopback_ip(23), LeechOpts::default());
    leech.wait_complete(T).unwrap();
    payload.assert_downloaded_to(&out);
    elapsed(start, "libtorrent <- transmission (tracker)");
}

/// The corrupt seeder really serves bad bytes: its copy fails exactly the chosen
/// piece hashes, and a libtorrent leecher sees hash failures from it; a good seeder
/// pushed in afterwards lets the download finish.
#[test]
fn corrupt_libtorrent_seeder_serves_bad_data() {
    require_or_skip!("mktorrent", LIBTORRENT);
    let start = Instant::now();
    let work = Workdir::new("corrupt");
    let payload = make_payload(&work.subdir("seed"), "c.bin", &[1 << 20], 5);
    let torrent = make_torrent(&payload, "", 32 * 1024);
    let bad_opts = SeedOpts {
        corrupt: true,
        announce: false,
        ..SeedOpts::default()
    };
    let bad = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(14), bad_opts);
    assert_eq!(bad.corrupted_pieces(), &[0, 16, 31]);
    assert_eq!(torrent.bad_pieces(bad.save_path()), bad.corrupted_pieces());
    assert!(
        torrent.bad_pieces(&payload.root).is_empty(),
        "the original payload is untouched"
    );

    let out = work.subdir("out");
    let opts = LeechOpts {
        connect_to: vec![bad.listen_addr()],
        announce: false,
        ..LeechOpts::default()
    };
    let mut leech = LibtorrentPeer::leech(&work, &torrent, &out, loopback_ip(24), opts);
    let st = leech
        .wait_for(T, "a hash failure", |s| s.hash_failures > 0)
        .unwrap();
    assert!(!st.is_seeding);

    let good_opts = SeedOpts {
        announce: false,
        ..SeedOpts::default()
    };
    let good = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(15), good_opts);
    leech.connect_to(good.listen_addr());
    leech.wait_complete(T).unwrap();
    payload.assert_downloaded_to(&out);
    elapsed(start, "corrupt seeder");
}

/// Magnet links work (metadata over ut_metadata), and `connect_to` alone finds
/// the seeder (no tracker at all).
#[test]
fn libtorrent_magnet_leech_without_tracker() {
    require_or_skip!("mktorrent", LIBTORRENT);
    let work = Workdir::new("magnet");
    let payload = make_payload(&work.subdir("seed"), "m", &[200_000, 1], 6);
    let torrent = make_torrent(&payload, "", 32 * 1024);
    let seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(16),
        SeedOpts {
            announce: false,
            ..SeedOpts::default()
        },
    );
    let out = work.subdir("out");
    let opts = LeechOpts {
        connect_to: vec![seed.listen_addr()],
        announce: false,
        ..LeechOpts::default()
    };
    let mut leech =
        LibtorrentPeer::leech(&work, torrent.magnet.as_str(), &out, loopback_ip(26), opts);
    leech.wait_complete(T).unwrap();
    payload.assert_downloaded_to(&out);
}

/// qBittorrent seeds through the tracker to aria2c.
#[test]
fn aria2_leeches_from_qbittorrent_seeder_via_tracker() {
    require_or_skip!("opentracker", "mktorrent", "aria2c", "qbittorrent-nox");
    let start = Instant::now();
    let work = Workdir::new("qbt-seed");
    let payload = make_payload(&work.subdir("seed"), "q", &[1 << 20, 400_000], 8);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 32 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let _seed = QbittorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(17));
    let out = work.subdir("out");
    let mut leech = Aria2Peer::leech(&work, &torrent, &out, loopback_ip(27), 0);
    leech.wait_complete(T).unwrap();
    payload.assert_downloaded_to(&out);
    elapsed(start, "aria2 <- qbittorrent (tracker)");
}

/// A qBittorrent leecher gets the torrent from a magnet (metadata via
/// ut_metadata) and data from a libtorrent seeder that connects out to it.
#[test]
fn qbittorrent_leeches_magnet_from_pushing_libtorrent_seeder() {
    require_or_skip!("mktorrent", "qbittorrent-nox", LIBTORRENT);
    let start = Instant::now();
    let work = Workdir::new("qbt-leech");
    let payload = make_payload(&work.subdir("seed"), "q.bin", &[(1 << 20) + 3], 9);
    let torrent = make_torrent(&payload, "", 32 * 1024);
    let seed_opts = SeedOpts {
        announce: false,
        ..SeedOpts::default()
    };
    let seed = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(18), seed_opts);
    let out = work.subdir("out");
    let mut leech = QbittorrentPeer::leech(&work, torrent.magnet.as_str(), &out, loopback_ip(28));
    seed.connect_to(leech.listen_addr());
    leech.wait_complete(T).unwrap();
    payload.assert_downloaded_to(&out);
    elapsed(start, "qbittorrent <- libtorrent (magnet, push)");
}

fn alive(pid: u32) -> bool {
    // A reaped or vanished process has no /proc entry; a zombie still counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Dropping fixtures (also while a test panics) kills their process groups.
#[test]
fn drop_and_panic_kill_processes() {
    require_or_skip!("opentracker");
    let work = Workdir::new("cleanup");
    let tracker = Tracker::start(&work, &[]);
    let pid = tracker.pid();
    assert!(alive(pid));
    drop(tracker);
    assert!(!alive(pid), "opentracker {pid} survived drop");

    let work2 = Workdir::new("cleanup-panic");
    let pid_cell = std::sync::Mutex::new(0u32);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = Tracker::start(&work2, &[]);
        *pid_cell.lock().unwrap() = t.pid();
        panic!("deliberate panic with a live tracker");
    }));
    assert!(r.is_err());
    let pid = *pid_cell.lock().unwrap();
    assert!(
        pid != 0 && !alive(pid),
        "opentracker {pid} survived a panic"
    );
}

const VICTIM_ENV: &str = "TEST_SWARM_VICTIM_PIDFILE";

/// Helper for `watchdog_kills_groups_when_test_process_dies`: does nothing unless
/// started by it with `TEST_SWARM_VICTIM_PIDFILE` set.
#[test]
fn victim_helper() {
    let Ok(pidfile) = std::env::var(VICTIM_ENV) else {
        return;
    };
    let work = Workdir::new("victim");
    let t = Tracker::start(&work, &[]);
    let pid = t.pid();
    std::fs::write(&pidfile, pid.to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(60)); // killed by the parent test long before
}

/// When the test process is SIGKILLed (no unwinding, no Drop), the per-workdir
/// watchdog still kills the fixtures' process groups.
#[test]
fn watchdog_kills_groups_when_test_process_dies() {
    require_or_skip!("opentracker");
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut victim = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "victim_helper", "--nocapture"])
        .env(VICTIM_ENV, &pidfile)
        // The victim cannot remove its workdir; put it where ours is removed.
        .env("TMPDIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid: u32 = wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "victim to start a tracker",
        || {
            Ok(std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.parse().ok()))
        },
    )
    .unwrap();
    assert!(alive(pid));
    victim.kill().unwrap();
    victim.wait().unwrap();
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "watchdog to kill opentracker",
        || Ok((!alive(pid)).then_some(())),
    )
    .unwrap();
}
