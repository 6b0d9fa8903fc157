//! `riptide stream` against real seeders: paced playback with seeks, bad
//! HTTP requests, signed URLs, many concurrent readers, and real players
//! (ffprobe/ffmpeg) on an in-progress download. Named `swarm_*` for
//! nextest's real-peers group.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_swarm::http::request;
use test_swarm::*;

const T: Duration = Duration::from_secs(60);

/// A running `riptide stream`, its log and the URL it printed.
struct Streamer {
    child: Child,
    log: std::path::PathBuf,
    url: String,
    addr: SocketAddr,
}

impl Streamer {
    fn start(
        work: &Workdir,
        torrent: &Torrent,
        ip: std::net::Ipv4Addr,
        extra: &[&str],
    ) -> Streamer {
        let port = free_port(std::net::Ipv4Addr::LOCALHOST);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = work
            .logs_dir()
            .join(work.unique_name("riptide-stream") + ".log");
        let out_file = work
            .logs_dir()
            .join(work.unique_name("riptide-stream-url") + ".txt");
        let child = Command::new(env!("CARGO_BIN_EXE_riptide"))
            .env("RIPTIDE_LOG", "info,bt_engine=debug")
            .arg("stream")
            .arg(&torrent.path)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--out")
            .arg(work.subdir("stream-out"))
            .arg("--bind")
            .arg(ip.to_string())
            .args(extra)
            .stdout(std::fs::File::create(&out_file).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn riptide stream");
        let start = Instant::now();
        let url = loop {
            let text = std::fs::read_to_string(&out_file).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with("http://")) {
                break line.trim().to_string();
            }
            assert!(start.elapsed() < T, "riptide stream printed no URL");
            std::thread::sleep(Duration::from_millis(20));
        };
        Streamer {
            child,
            log,
            url,
            addr,
        }
    }

    /// Path and query of the printed URL.
    fn path(&self) -> String {
        self.url
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> test_swarm::http::Response {
        request(self.addr, "GET", path, headers, b"", T).unwrap()
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `len` bytes from `offset` at no more than `rate` bytes/s, like a
/// player consuming a film; returns the bytes.
fn paced_read(addr: SocketAddr, path: &str, offset: u64, len: u64, rate: u64) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, T).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nRange: bytes={offset}-\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    let start = Instant::now();
    let mut out = Vec::with_capacity(len as usize);
    let mut buf = vec![0u8; 16 * 1024];
    while (out.len() as u64) < len {
        let allowed = (start.elapsed().as_secs_f64() * rate as f64) as u64 + 64 * 1024;
        if out.len() as u64 >= allowed {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let want = (len - out.len() as u64).min(buf.len() as u64) as usize;
        let n = s.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "stream ended early at {}", out.len());
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn underruns(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains("stream closed"))
        .filter_map(|l| l.split("underruns=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect()
}

/// A reader plays from the start at the film's bitrate, then seeks to 50%
/// and 90%; the seeder uploads at about 4x the bitrate. Bytes must match;
/// underruns are reported (timings are asserted only in the simulation).
#[test]
fn swarm_paced_playback_with_seeks() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-stream-paced");
    let payload = make_payload(&work.subdir("seed"), "film.bin", &[32 << 20], 77);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 256 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let bitrate = 1_000_000u64;
    let opts = SeedOpts {
        upload_limit_bps: Some(4 * bitrate),
        ..SeedOpts::default()
    };
    let _seed = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(61), opts);
    let rt = Streamer::start(&work, &torrent, loopback_ip(9), &[]);
    let source = std::fs::read(payload.content_path()).unwrap();
    let total = source.len() as u64;
    for (offset, secs) in [(0, 4), (total / 2, 3), (total * 9 / 10, 3)] {
        let len = (bitrate * secs).min(total - offset);
        let got = paced_read(rt.addr, &rt.path(), offset, len, bitrate);
        assert!(
            got == source[offset as usize..(offset + len) as usize],
            "bytes differ at offset {offset}"
        );
    }
    // Streams close when the server notices each reader has gone.
    std::thread::sleep(Duration::from_millis(500));
    let log = rt.log();
    eprintln!(
        "underruns per stream (after the first byte): {:?}",
        underruns(&log)
    );
}

fn seeded_streamer(
    work: &Workdir,
    extra: &[&str],
) -> (Payload, Streamer, (Tracker, LibtorrentPeer)) {
    let payload = make_payload(&work.subdir("seed"), "clip.mp4", &[3_000_000], 5);
    let tracker = Tracker::start(work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let seed = LibtorrentPeer::seed(
        work,
        &torrent,
        &payload.root,
        loopback_ip(62),
        SeedOpts::default(),
    );
    let rt = Streamer::start(work, &torrent, loopback_ip(10), extra);
    (payload, rt, (tracker, seed))
}

#[test]
fn swarm_bad_requests_get_clear_answers() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-stream-bad");
    let (payload, rt, _seed) = seeded_streamer(&work, &[]);
    let source = std::fs::read(payload.content_path()).unwrap();
    let len = source.len();
    let path = rt.path();

    // Safari's probe.
    let r = rt.get(&path, &[("Range", "bytes=0-1")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, source[..2]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-1/{len}").as_str())
    );
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    let etag = r.header("etag").unwrap().to_string();

    // Whole file, suffix, open-ended.
    let r = rt.get(&path, &[]);
    assert_eq!((r.status, r.body.len()), (200, len));
    assert!(r.body == source);
    let r = rt.get(&path, &[("Range", "bytes=-100")]);
    assert_eq!((r.status, &r.body[..]), (206, &source[len - 100..]));

    // Unsatisfiable or malformed: 416 with the length.
    for bad in [
        format!("bytes={len}-"),
        format!("bytes={}-{}", len + 10, len + 20),
        "bytes=500-100".to_string(),
        "bytes=99999999999999999999999-".to_string(),
        "bytes=abc".to_string(),
        "bytes=-0".to_string(),
        "pages=1-2".to_string(),
    ] {
        let r = rt.get(&path, &[("Range", &bad)]);
        assert_eq!(r.status, 416, "{bad}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{len}").as_str()),
            "{bad}"
        );
    }
    // Multi-range: answered with the first range alone.
    let r = rt.get(&path, &[("Range", "bytes=10-19,100-199")]);
    assert_eq!((r.status, &r.body[..]), (206, &source[10..20]));
    // Conditional requests.
    let r = rt.get(&path, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    let r = rt.get(&path, &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")]);
    assert_eq!(
        r.status, 200,
        "If-Range with another validator sends everything"
    );
    // HEAD: headers, no body (read raw: the framing says a body would follow).
    let mut s = TcpStream::connect(rt.addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    s.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {len}\r\n")),
        "{head}"
    );
    assert!(
        head.ends_with("\r\n\r\n"),
        "HEAD must not send a body: {head:?}"
    );
    // Unknown torrent or file.
    assert_eq!(
        rt.get(&format!("/stream/{}/0", "0".repeat(40)), &[]).status,
        404
    );
    let wrong_file = path
        .rsplit_once('/')
        .map(|(p, _)| format!("{p}/7"))
        .unwrap();
    assert_eq!(rt.get(&wrong_file, &[]).status, 404);
    let not_number = path
        .rsplit_once('/')
        .map(|(p, _)| format!("{p}/x"))
        .unwrap();
    assert_eq!(rt.get(&not_number, &[]).status, 404);
    assert!(!rt.log().contains("panicked"));
}

#[test]
fn swarm_many_concurrent_readers() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-stream-many");
    let (payload, rt, _seed) = seeded_streamer(&work, &[]);
    let source = std::sync::Arc::new(std::fs::read(payload.content_path()).unwrap());
    let len = source.len();
    let path = rt.path();
    let addr = rt.addr;
    let readers: Vec<_> = (0..32)
        .map(|i| {
            let source = source.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let start = (i * 92_821) % (len - 200_000);
                let end = start + 150_000 + i * 1000;
                let range = format!("bytes={start}-{}", end - 1);
                let r = request(addr, "GET", &path, &[("Range", &range)], b"", T).unwrap();
                assert_eq!(r.status, 206);
                assert!(r.body == source[start..end], "reader {i} got wrong bytes");
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn swarm_signed_urls() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("rt-stream-token");
    let (payload, rt, _seed) = seeded_streamer(&work, &["--token"]);
    let signed = rt.path();
    assert!(signed.contains("?token="), "{signed}");
    let bare = signed.split('?').next().unwrap().to_string();
    let r = rt.get(&signed, &[("Range", "bytes=0-99")]);
    assert_eq!(r.status, 206);
    assert!(r.body == std::fs::read(payload.content_path()).unwrap()[..100]);
    assert_eq!(rt.get(&bare, &[]).status, 403, "no token");
    let forged = format!("{bare}?token=9999999999.{}", "ab".repeat(32));
    assert_eq!(rt.get(&forged, &[]).status, 403, "forged token");
    assert_eq!(rt.get(&format!("{bare}?token=garbage"), &[]).status, 403);
    // A token for another file does not open this one.
    let other = bare
        .rsplit_once('/')
        .map(|(p, _)| format!("{p}/1"))
        .unwrap();
    let token = signed.split("token=").nth(1).unwrap();
    assert_eq!(rt.get(&format!("{other}?token={token}"), &[]).status, 403);
}

/// Where `../shared/media/make-samples.sh` is, if this checkout has it.
fn samples_script() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/media/make-samples.sh");
    p.exists().then(|| p.canonicalize().unwrap())
}

/// ffprobe and ffmpeg read films from the stream URL while they download
/// (the seeder is throttled so the download is still going), from the
/// start and after a seek.
#[test]
fn swarm_ffmpeg_plays_in_progress_downloads() {
    require_or_skip!("opentracker", "mktorrent", "ffmpeg", "ffprobe", LIBTORRENT);
    let Some(script) = samples_script() else {
        eprintln!("skipping: ../shared/media/make-samples.sh is not beside this checkout");
        return;
    };
    let samples = std::env::var("MEDIA_SAMPLES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("riptide-media-samples-full"));
    let st = Command::new(&script)
        .arg(&samples)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "make-samples.sh failed");
    let cases = [
        "movies/Big.Buck.Bunny.2008.1080p.BluRay.x264-GRP",
        "movies/Tears.of.Steel.2012.720p.WEB-DL.AAC2.0.H.264-GRP.mp4",
        "movies/Sintel.2010.1080p.BluRay.x265.10bit.AC3.5.1-GRP",
    ];
    for case in cases {
        let src = samples.join(case);
        let file = if src.is_dir() {
            std::fs::read_dir(&src)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "mp4" || e == "mkv"))
                .unwrap()
        } else {
            src.clone()
        };
        let work = Workdir::new("rt-stream-ffmpeg");
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let dir = work.subdir("seed");
        std::fs::copy(&file, dir.join(&name)).unwrap();
        let size = std::fs::metadata(&file).unwrap().len();
        let payload = Payload {
            root: dir.clone(),
            name: name.clone(),
            files: vec![(std::path::PathBuf::from(&name), size)],
        };
        let tracker = Tracker::start(&work, &[]);
        let torrent = make_torrent(&payload, &tracker.announce_url(), 16 * 1024);
        tracker.allow(&torrent.info_hash_hex);
        // Slow enough that the whole file takes several seconds.
        let opts = SeedOpts {
            upload_limit_bps: Some((size / 8).max(20_000)),
            ..SeedOpts::default()
        };
        let seed = LibtorrentPeer::seed(&work, &torrent, &dir, loopback_ip(63), opts);
        let rt = Streamer::start(&work, &torrent, loopback_ip(11), &[]);
        let url = rt.url.clone();
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
                &url,
            ])
            .output()
            .unwrap();
        assert!(
            probe.status.success(),
            "{name}: ffprobe failed: {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        let duration: f64 = String::from_utf8_lossy(&probe.stdout)
            .trim()
            .parse()
            .unwrap();
        let verified_when_probed = rt.log().matches("piece verified").count();
        for ss in [0.0, duration / 2.0] {
            let out = Command::new("ffmpeg")
                .args([
                    "-v",
                    "error",
                    "-ss",
                    &format!("{ss:.2}"),
                    "-i",
                    &url,
                    "-map",
                    "0:v:0",
                    "-frames:v",
                    "1",
                    "-f",
                    "framemd5",
                    "-",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name} at {ss}s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| !l.starts_with('#')),
                "{name}: no frame decoded at {ss}s"
            );
        }
        let pieces = torrent.num_pieces() as usize;
        assert!(
            verified_when_probed < pieces,
            "{name}: the whole file was downloaded before ffprobe finished; the test did not exercise an in-progress download"
        );
        eprintln!("{name}: probed with {verified_when_probed} of {pieces} pieces downloaded");
        drop(seed);
    }
}

/// Chromium's `<video>` plays the stream URL of a film that is still
/// downloading (throttled seeder), and a seek to the middle plays on.
/// Needs Debian's chromium and playwright-core (scripts/test.sh installs
/// both); the film is made here with ffmpeg, so no `../shared` is needed.
#[test]
fn swarm_chromium_plays_while_downloading() {
    require_or_skip!(
        "opentracker",
        "mktorrent",
        "ffmpeg",
        "node",
        "chromium",
        LIBTORRENT
    );
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../streaming/tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        eprintln!(
            "skipping: playwright-core is not installed in {} (run scripts/test.sh)",
            browser_dir.display()
        );
        return;
    }
    let work = Workdir::new("rt-stream-chromium");
    let dir = work.subdir("seed");
    let name = "Test.Pattern.2024.mp4";
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x180:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
        ])
        .args([
            "-t",
            "30",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-movflags", "+faststart"])
        .arg(dir.join(name))
        .status()
        .unwrap();
    assert!(made.success(), "ffmpeg could not make the test film");
    let size = std::fs::metadata(dir.join(name)).unwrap().len();
    let payload = Payload {
        root: dir.clone(),
        name: name.to_string(),
        files: vec![(std::path::PathBuf::from(name), size)],
    };
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 32 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    // About 2x the film's bitrate: the download takes ~15 s, playback 30 s.
    let opts = SeedOpts {
        upload_limit_bps: Some((size / 15).max(32 * 1024)),
        ..SeedOpts::default()
    };
    let _seed = LibtorrentPeer::seed(&work, &torrent, &dir, loopback_ip(64), opts);
    let rt = Streamer::start(&work, &torrent, loopback_ip(12), &[]);
    let shots = work.subdir("screenshots");
    let out = Command::new("node")
        .arg(browser_dir.join("direct.mjs"))
        .arg(&rt.url)
        .arg(&shots)
        .current_dir(&browser_dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let pieces = torrent.num_pieces() as usize;
    let verified = rt.log().matches("piece verified").count();
    eprintln!("chromium: {report} ({verified}/{pieces} pieces when it finished)");
    let keep = std::env::var("RIPTIDE_TEST_ARTIFACTS").ok();
    if let Some(dir) = keep {
        let _ = std::fs::create_dir_all(&dir);
        for f in ["direct-playing.png", "direct-after-seek.png"] {
            let _ = std::fs::copy(shots.join(f), Path::new(&dir).join(f));
        }
    }
    assert!(
        report.contains("\"errors\":[]"),
        "chromium reported errors: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let num = |key: &str| -> f64 {
        report
            .split(&format!("\"{key}\":"))
            .nth(1)
            .and_then(|r| r.split([',', '}']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    assert!(num("first") > 1.0, "currentTime did not advance: {report}");
    assert!(
        num("after") > num("target"),
        "playback did not pass the seek target: {report}"
    );
    // Log lines start with their timestamp: the first byte went out before
    // the download completed.
    let log = rt.log();
    let when = |what: &str| {
        log.lines()
            .find(|l| l.contains(what))
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
    };
    let first = when("stream first byte").expect("a stream started");
    if let Some(done) = when("download complete") {
        assert!(
            first < done,
            "playback started only after the download was complete"
        );
    }
}
