//! Issue 8, acceptance 3: a film that Chrome cannot play (10-bit H.264 +
//! 5.1 AC-3) is downloaded by `riptide serve` from a throttled libtorrent
//! seeder with pre-transcoding on for a `chrome` household. The test checks
//! that the pre-transcode result exists, is complete, and direct-plays on
//! `chrome`; it prints the time from download completion to the result
//! being ready against the film's transcode time alone (a separate
//! PreTranscoder run on the finished file). Timings are printed, not
//! asserted (house rule); BENCHMARKS.md has the measured ratio. Named
//! `swarm_*` for nextest's real-peers group.

mod server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use streaming::decision::{DecisionKind, Options, plan_file};
use streaming::pretranscode::{JobState, PreTranscodeConfig, PreTranscoder, Request};
use test_swarm::torrent::url_encode;
use test_swarm::*;

const SECS: u32 = 30;

/// 10-bit H.264 + 5.1 AC-3 in MKV: `chrome` needs a full transcode.
fn make_film(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=640x360:rate=25:duration={SECS}"))
        .args(["-f", "lavfi", "-i", &format!("sine=duration={SECS}")])
        .args(["-ac", "6", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p10le", "-c:a", "ac3"])
        .arg(path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The film's transcode time alone: the same pre-transcode on a local copy.
fn transcode_alone(film: &Path, work: &Path) -> f64 {
    let copy = work.join(film.file_name().unwrap());
    std::fs::copy(film, &copy).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let chrome = streaming::profiles::builtin("chrome").unwrap();
        let pt = PreTranscoder::new(
            PreTranscodeConfig::new(vec![chrome]),
            ffmpeg::Pool::new(ffmpeg::PoolConfig::default()),
        )
        .unwrap();
        let t = Instant::now();
        let id = pt
            .submit(Request {
                input: ffmpeg::Input::File(copy.clone()),
                film: copy.clone(),
                priority: 0,
            })
            .unwrap();
        let done = pt.wait(id).await.unwrap();
        assert!(
            matches!(done.state, JobState::Done { .. }),
            "{:?}",
            done.state
        );
        t.elapsed().as_secs_f64()
    })
}

#[test]
fn swarm_pretranscode_during_throttled_download() {
    require_or_skip!("opentracker", "mktorrent", "ffmpeg", LIBTORRENT);
    let work = Workdir::new("rt-pretranscode");
    let seed_dir = work.subdir("seed");
    let name = "Pretranscode Test Film (2024).mkv";
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
    // About 10 s of download.
    let seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(75),
        SeedOpts {
            upload_limit_bps: Some((size / 10).max(64 * 1024)),
            ..SeedOpts::default()
        },
    );
    let peer_port = free_port(loopback_ip(15)).to_string();
    let srv = server::Server::start(
        &work.subdir("data"),
        &work.logs_dir(),
        &[
            ("RIPTIDE_PEER_BIND", "127.0.0.15"),
            ("RIPTIDE_PEER_PORT", &peer_port),
            ("RIPTIDE_PRETRANSCODE", "true"),
            ("RIPTIDE_HOUSEHOLD", "chrome"),
        ],
    );
    let cookie = srv.setup_admin();
    let token = srv.api_token(&cookie);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn={}&tr={}&x.pe={}",
        torrent.info_hash_hex,
        url_encode(name.as_bytes()),
        url_encode(tracker.announce_url().as_bytes()),
        seed.listen_addr()
    );
    let added = Instant::now();
    srv.add_magnet(&token, &magnet);

    let deadline = Instant::now() + Duration::from_secs(600);
    let mut downloaded: Option<Instant> = None;
    let (output, job_secs) = loop {
        assert!(
            Instant::now() < deadline,
            "no pre-transcode in 10 minutes: {}",
            srv.log()
        );
        if downloaded.is_none() {
            let list = srv.api_get("/api/v1/torrents", &token);
            let t = &list.as_array().unwrap()[0];
            let total = t.get("total_bytes").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let have = t
                .get("verified_bytes")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0);
            if total > 0.0 && have >= total {
                downloaded = Some(Instant::now());
            }
        }
        let st = srv.api_get("/pretranscode/status", &token);
        let jobs = st.get("jobs").and_then(|j| j.as_array()).unwrap();
        if let Some(j) = jobs.first() {
            let state = j.get("state").and_then(|s| s.as_str()).unwrap_or("");
            match state {
                "done" => {
                    let out = j.get("output").and_then(|o| o.as_str()).unwrap();
                    let secs = j.get("secs").and_then(|o| o.as_f64()).unwrap_or(0.0);
                    break (PathBuf::from(out), secs);
                }
                "failed" | "cancelled" | "skipped" => {
                    panic!("pre-transcode {state}: {j:?}\n{}", srv.log())
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let ready = Instant::now();
    let downloaded = downloaded.expect("the result was ready before the download ended");
    let after_download = ready.duration_since(downloaded).as_secs_f64();
    let download_secs = downloaded.duration_since(added).as_secs_f64();

    // The result is complete, in place of nothing half-written, and
    // direct-plays on the profile it was made for.
    assert!(output.exists(), "{}", output.display());
    assert!(
        output
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(".riptide.mp4"),
        "{}",
        output.display()
    );
    let dir = output.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    let film = dir.join(name);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let chrome = streaming::profiles::builtin("chrome").unwrap();
    let (info, d) = rt
        .block_on(plan_file(&output, &chrome, &Options::default()))
        .unwrap();
    assert_eq!(d.decision, DecisionKind::DirectPlay, "{:?}", d.reasons);
    let dur = info.duration_secs.unwrap_or(0.0);
    assert!(
        (dur - SECS as f64).abs() < 0.5,
        "the result is {dur} s long, the film {SECS} s"
    );
    drop(rt);

    let alone = transcode_alone(&film, &work.subdir("alone"));
    eprintln!(
        "download {download_secs:.2} s; pre-transcode ready {after_download:.2} s after the \
         download ended (job {job_secs:.2} s); transcode alone {alone:.2} s; \
         ratio {:.2} (goal <= 1.5)",
        after_download / alone
    );
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
}
