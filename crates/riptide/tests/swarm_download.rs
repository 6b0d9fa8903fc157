//! `riptide download` against real BitTorrent clients on loopback.
//!
//! Named `swarm_*` so nextest runs these in the `real-peers` group. Each
//! test starts its own tracker and peers via `test-swarm` and skips with a
//! printed reason when a program is missing (scripts/test.sh installs them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_swarm::*;

const TIMEOUT: Duration = Duration::from_secs(180);

fn riptide() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_riptide"));
    c.env("RIPTIDE_LOG", "info,bt_engine=debug");
    c
}

/// Runs `riptide download` to completion, logging into the workdir.
fn download(work: &Workdir, args: &[&str], out: &Path) -> std::process::ExitStatus {
    let log =
        std::fs::File::create(work.logs_dir().join(work.unique_name("riptide") + ".log")).unwrap();
    let mut child: Child = riptide()
        .arg("download")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--bind")
        .arg("127.0.0.1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn riptide");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            work.dump_logs();
            panic!("riptide did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 64+ MiB over eight files of odd sizes, so that many pieces span two or
/// three files, from a libtorrent seeder found through opentracker.
#[test]
fn swarm_multi_file_from_libtorrent_seeder() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-lt-multi");
    let sizes = [
        9_000_001, 5_123, 17_000_000, 300_000, 12_345_678, 1, 20_000_000, 8_500_000,
    ];
    let payload = make_payload(&work.subdir("seed"), "multi", &sizes, 11);
    assert!(payload.total_size() >= 64 << 20);
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
    let status = download(&work, &[torrent.path.to_str().unwrap()], &out);
    if !status.success() {
        work.dump_logs();
    }
    assert!(status.success(), "riptide exited with {status}");
    payload.assert_downloaded_to(&out);
}
