//! `riptide serve` end to end in a real browser, as a new user: set up the
//! admin, log in, add a magnet served by a local libtorrent seeder, watch
//! the progress reach 100 %, find the film in the library, play it (the
//! video's currentTime advances), pause and remove the torrent. Bad input
//! on the way gets clear messages. Screenshots of every page (desktop and
//! 375 px) go to `test-artifacts/web-e2e/`. Named `swarm_*` for nextest's
//! real-peers group.

mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use test_swarm::torrent::url_encode;
use test_swarm::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A short, real film: H.264 + AAC in a faststart MP4.
fn make_film(path: &Path) {
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", "20"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-movflags", "+faststart"])
        .arg(path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn swarm_web_end_to_end() {
    require_or_skip!(
        "opentracker",
        "mktorrent",
        "ffmpeg",
        "node",
        "/usr/bin/chromium",
        LIBTORRENT
    );
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        let why = "skipping: playwright-core is not installed in crates/riptide/tests/browser (run scripts/test.sh)";
        assert!(std::env::var(STRICT_ENV).as_deref() != Ok("1"), "{why}");
        eprintln!("{why}");
        return;
    }
    let started = Instant::now();
    let work = Workdir::new("rt-web-e2e");
    let seed_dir = work.subdir("seed");
    let name = "Riptide Test Film (2024).mp4";
    make_film(&seed_dir.join(name));
    let size = std::fs::metadata(seed_dir.join(name)).unwrap().len();
    let payload = Payload {
        root: seed_dir.clone(),
        name: name.into(),
        files: vec![(PathBuf::from(name), size)],
    };
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    // Throttled, so the page shows the download in progress for a while.
    let seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(74),
        SeedOpts {
            upload_limit_bps: Some((size / 6).max(64 * 1024)),
            ..SeedOpts::default()
        },
    );
    let peer_port = free_port(loopback_ip(14)).to_string();
    let srv = server::Server::start(
        &work.subdir("data"),
        &work.logs_dir(),
        &[
            ("RIPTIDE_PEER_BIND", "127.0.0.14"),
            ("RIPTIDE_PEER_PORT", &peer_port),
        ],
    );
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn={}&tr={}&x.pe={}",
        torrent.info_hash_hex,
        url_encode(name.as_bytes()),
        url_encode(tracker.announce_url().as_bytes()),
        seed.listen_addr()
    );
    let bad = work.subdir("bad").join("broken.torrent");
    std::fs::write(&bad, b"d8:announce4:http4:infod6:lengthi-5eee").unwrap();
    let shots = workspace().join("test-artifacts/web-e2e");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .current_dir(&browser_dir)
        .arg("e2e.mjs")
        .arg(srv.base())
        .arg(&magnet)
        .arg(&shots)
        .arg(&bad)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().last().unwrap_or("");
    let r = json::parse(line).unwrap_or_else(|e| {
        panic!(
            "no result from the browser ({e}): {stdout}\n{stderr}\nserver log:\n{}",
            srv.log()
        )
    });
    eprintln!("browser: {line}");
    eprintln!(
        "e2e took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    let errors = r.get("errors").and_then(|e| e.as_array()).unwrap_or(&[]);
    assert!(
        errors.is_empty(),
        "browser errors: {line}\nserver log:\n{}",
        srv.log()
    );
    let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    assert!(
        text("wrong_password").contains("wrong user name or password"),
        "{line}"
    );
    assert!(text("empty_error").contains("nothing to add"), "{line}");
    assert!(
        text("bad_magnet_error").contains("invalid magnet link"),
        "{line}"
    );
    assert_eq!(
        text("bad_magnet_kept"),
        "magnet:?xt=urn:btih:nothex",
        "the typed text is kept"
    );
    assert!(
        text("not_magnet_error").contains("not a magnet link"),
        "{line}"
    );
    assert!(
        text("bad_torrent_error").contains("not a valid .torrent"),
        "{line}"
    );
    assert_eq!(
        r.get("live_without_reload").and_then(|v| v.as_bool()),
        Some(true),
        "{line}"
    );
    assert_eq!(text("card"), "Riptide Test Film", "{line}");
    let t = r
        .get("current_time")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    assert!(t > 2.0, "the video did not play: {line}");
    assert_eq!(
        r.get("token_shown").and_then(|v| v.as_bool()),
        Some(true),
        "{line}"
    );
    assert_eq!(
        r.get("remaining").and_then(|v| v.as_f64()),
        Some(0.0),
        "{line}"
    );
    assert_eq!(
        r.get("library_after_remove").and_then(|v| v.as_f64()),
        Some(0.0),
        "{line}"
    );
    let overflow = r.get("overflow").and_then(|e| e.as_array()).unwrap_or(&[]);
    assert!(overflow.is_empty(), "pages wider than a phone: {line}");
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
}
