//! On-demand HLS over a real axum server on 127.0.0.1: Apple TV output
//! checked with ffprobe, seeking restarts ffmpeg at the right segment,
//! idle sessions stop their ffmpeg, strict names, WebVTT renditions, and
//! Chromium playing the Chrome output through the vendored hls.js.
//!
//! Needs ffmpeg, and `../shared/media/make-samples.sh` for the sample films;
//! the browser test also needs /usr/bin/chromium and `npm i` in
//! tests/browser (scripts/test.sh does both). Missing pieces skip with a
//! printed reason.

use ffmpeg::{Pool, PoolConfig};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use streaming::hls::{HlsConfig, HlsService, router};
use streaming::profiles;

fn samples() -> Option<PathBuf> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/media/make-samples.sh");
    if !script.exists() {
        eprintln!(
            "skipping: {} not found (no ../shared beside the checkout)",
            script.display()
        );
        return None;
    }
    if !have_ffmpeg() {
        return None;
    }
    let dir = std::env::var_os("MEDIA_SAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("riptide-media-samples-full"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(&script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

fn have_ffmpeg() -> bool {
    let ok = std::process::Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_ok();
    if !ok {
        eprintln!("skipping: ffmpeg not installed (run scripts/test.sh)");
    }
    ok
}

fn sample(dir: &Path, id: &str) -> PathBuf {
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let f = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap();
    dir.join(f["path"].as_str().unwrap())
}

struct Server {
    addr: SocketAddr,
    svc: HlsService,
    _root: tempfile::TempDir,
}

async fn server(tune: impl FnOnce(&mut HlsConfig)) -> Server {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = HlsConfig::new(root.path().to_path_buf());
    tune(&mut cfg);
    let svc = HlsService::new(cfg, Pool::new(PoolConfig::default()));
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/player.html");
    let app = router(svc.clone())
        .route(
            "/vendor/hls.js/hls.min.js",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                    std::fs::read(web.join("vendor/hls.js/hls.min.js")).unwrap(),
                )
            }),
        )
        .route(
            "/player.html",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/html")],
                    std::fs::read(page).unwrap(),
                )
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    Server {
        addr,
        svc,
        _root: root,
    }
}

async fn get(addr: SocketAddr, path: &str) -> test_swarm::http::Response {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        test_swarm::http::request(addr, "GET", &path, &[], b"", Duration::from_secs(90)).unwrap()
    })
    .await
    .unwrap()
}

async fn start(s: &Server, file: &Path, profile: &str) -> streaming::hls::SessionInfo {
    let info = ffmpeg::probe(file).await.unwrap();
    s.svc
        .start(
            ffmpeg::Input::File(file.to_path_buf()),
            file,
            &info,
            &profiles::builtin(profile).unwrap(),
        )
        .await
        .unwrap()
}

/// `#EXTINF` durations and segment names of a media playlist.
fn extinf(playlist: &str) -> Vec<(f64, String)> {
    let lines: Vec<&str> = playlist.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(d) = l.strip_prefix("#EXTINF:") {
            let d: f64 = d.trim_end_matches(',').parse().unwrap();
            out.push((d, lines[i + 1].to_string()));
        }
    }
    out
}

/// Video stream facts and time range of an init + media segment.
fn probe_segment(init: &[u8], seg: &[u8]) -> (Value, f64, f64) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), [init, seg].concat()).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,codec_tag_string,profile,level:packet=pts_time,duration_time")
        .args(["-of", "json"])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} (segment boxes {:?}, init boxes {:?})",
        String::from_utf8_lossy(&out.stderr),
        top_level_boxes(seg),
        top_level_boxes(init)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pk = v["packets"].as_array().unwrap();
    let times: Vec<(f64, f64)> = pk
        .iter()
        .map(|p| {
            (
                p["pts_time"].as_str().unwrap().parse::<f64>().unwrap(),
                p["duration_time"]
                    .as_str()
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0),
            )
        })
        .collect();
    // The first packet in decode order is the keyframe the segment starts
    // with; leading B-frames of an open GOP may show earlier times.
    let start = times[0].0;
    let end = times.iter().map(|t| t.0 + t.1).fold(f64::MIN, f64::max);
    (v["streams"][0].clone(), start, end)
}

/// Children of an MP4 box body: (type, body).
fn child_boxes(b: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 8 <= b.len() {
        let size = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        let (hdr, size) = match size {
            1 => (
                16,
                u64::from_be_bytes(b[i + 8..i + 16].try_into().unwrap()) as usize,
            ),
            0 => (8, b.len() - i),
            n => (8, n),
        };
        if size < hdr || i + size > b.len() {
            break;
        }
        let kind = String::from_utf8_lossy(&b[i + 4..i + 8]).into_owned();
        out.push((kind, &b[i + hdr..i + size]));
        i += size;
    }
    out
}

fn child<'a>(b: &'a [u8], kind: &str) -> Vec<&'a [u8]> {
    child_boxes(b)
        .into_iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, body)| body)
        .collect()
}

/// Each track's decode start time in seconds (`tfdt` / the init's
/// `mdhd` timescale), in track order: what hls.js and Safari place a
/// segment by, edit lists aside.
fn tfdt_secs(init: &[u8], seg: &[u8]) -> Vec<f64> {
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let mut scales = std::collections::BTreeMap::new();
    for moov in child(init, "moov") {
        for trak in child(moov, "trak") {
            let tkhd = child(trak, "tkhd")[0];
            let id = be32(tkhd, if tkhd[0] == 1 { 20 } else { 12 });
            let mdhd = child(child(trak, "mdia")[0], "mdhd")[0];
            scales.insert(id, be32(mdhd, if mdhd[0] == 1 { 20 } else { 12 }));
        }
    }
    let mut out = Vec::new();
    if let Some(moof) = child(seg, "moof").first() {
        for traf in child(moof, "traf") {
            let id = be32(child(traf, "tfhd")[0], 4);
            let tfdt = child(traf, "tfdt")[0];
            let t = if tfdt[0] == 1 {
                u64::from_be_bytes(tfdt[4..12].try_into().unwrap())
            } else {
                be32(tfdt, 4) as u64
            };
            assert!(t < 1 << 62, "track {id}: tfdt {t} is a wrapped negative");
            out.push(t as f64 / scales[&id] as f64);
        }
    }
    out
}

fn top_level_boxes(b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 8 <= b.len() {
        let size = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&b[i + 4..i + 8]).into_owned());
        if size < 8 {
            break;
        }
        i += size;
    }
    out
}

/// Fetches every playlist and segment of a session and checks it against
/// ffprobe: fMP4, the declared CODECS, and each EXTINF against the video
/// time the segment really holds (within `tol` seconds).
async fn validate(s: &Server, master_url: &str, tol: f64) -> (String, Value) {
    let master = get(s.addr, master_url).await;
    assert_eq!(master.status, 200, "{}", master.text());
    let master = master.text();
    let codecs = master
        .split("CODECS=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let base = master_url.trim_end_matches("master.m3u8");
    // Copy mode serves ffmpeg's own playlist as it grows: poll until the
    // run has finished (disk speed, but the machine may be busy).
    let deadline = Instant::now() + Duration::from_secs(60);
    let media = loop {
        let media = get(s.addr, &format!("{base}video.m3u8")).await.text();
        if media.contains("#EXT-X-ENDLIST") || Instant::now() > deadline {
            break media;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(media.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{media}");
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
    let init = get(s.addr, &format!("{base}init.mp4")).await;
    assert_eq!(init.status, 200);
    let init = init.body;
    let boxes = top_level_boxes(&init);
    assert_eq!(
        &boxes[..2],
        ["ftyp", "moov"],
        "init segment boxes {boxes:?}"
    );
    assert!(
        init.windows(4).any(|w| w == b"mvex"),
        "init is not fragmented"
    );
    let mut stream = Value::Null;
    let segs = extinf(&media);
    assert!(!segs.is_empty());
    // Segment k must start where the playlist's durations put it, and the
    // last must end where they add up to (B-frames make a segment's own
    // packet range a poor measure of its length, starts are exact).
    let mut first_start = None;
    let mut first_tfdt = None;
    let mut elapsed = 0.0;
    for (k, (dur, name)) in segs.iter().enumerate() {
        let seg = get(s.addr, &format!("{base}{name}")).await;
        assert_eq!(seg.status, 200, "{name}: {}", seg.text());
        let boxes = top_level_boxes(&seg.body);
        assert!(
            boxes.contains(&"moof".to_string()) && boxes.contains(&"mdat".to_string()),
            "{name}: {boxes:?}"
        );
        let (st, start, end) = probe_segment(&init, &seg.body);
        // The video fragment's own decode time follows the playlist too
        // (what hls.js and Safari place it by), and no track is negative.
        let v = tfdt_secs(&init, &seg.body)[0];
        let v0 = *first_tfdt.get_or_insert(v);
        assert!(
            (v - v0 - elapsed).abs() <= tol,
            "{name}: tfdt {:.3} after the first, the playlist says {elapsed:.3}",
            v - v0
        );
        let t0 = *first_start.get_or_insert(start);
        assert!(
            (start - t0 - elapsed).abs() <= tol,
            "{name} starts at {:.3}, the playlist says {elapsed:.3}",
            start - t0
        );
        elapsed += dur;
        if k + 1 == segs.len() {
            assert!(
                (end - t0 - elapsed).abs() <= tol + 0.05,
                "last segment ends at {:.3}, the playlist says {elapsed:.3}",
                end - t0
            );
        }
        if k == 0 {
            stream = st;
        }
    }
    (codecs, stream)
}

#[tokio::test]
async fn apple_tv_hls_is_fmp4_hvc1_and_matches_its_playlists() {
    let Some(dir) = samples() else { return };
    let s = server(|_| {}).await;

    // HEVC Main 10 + AC-3 in MKV: a remux, copied into hvc1-tagged fMP4.
    let hevc = start(&s, &sample(&dir, "hevc10_ac3_mkv"), "apple-tv").await;
    // ffprobe applies the init's edit list (B-frame delay, 3 frames here)
    // to the first fragment only, so copied segments are checked to 0.15 s.
    let (codecs, st) = validate(&s, &hevc.master, 0.15).await;
    assert_eq!(st["codec_name"], "hevc");
    assert_eq!(st["codec_tag_string"], "hvc1", "{st}");
    let want = streaming::hls::video_codecs("hevc", st["profile"].as_str(), st["level"].as_i64());
    assert_eq!(codecs, format!("{want},ac-3"));

    // MPEG-4 Part 2 + MP3 in AVI: a full transcode to H.264 + AAC, with
    // segment boundaries predicted from the frame rate.
    let avi = start(&s, &sample(&dir, "mpeg4_mp3_avi"), "apple-tv").await;
    assert_eq!(avi.decision.decision.as_str(), "transcode");
    let (codecs, st) = validate(&s, &avi.master, 0.05).await;
    assert_eq!(st["codec_name"], "h264");
    let want = streaming::hls::video_codecs("h264", st["profile"].as_str(), st["level"].as_i64());
    assert_eq!(codecs, format!("{want},mp4a.40.2"));
    s.svc.shutdown().await;
}

/// A 40 s source: long enough that a seek lands far beyond what ffmpeg
/// has produced.
fn long_source(dir: &Path) -> PathBuf {
    let p = dir.join("long.mkv");
    let st = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=25:duration=40")
        .args(["-f", "lavfi", "-i", "sine=duration=40"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
        ])
        .args(["-c:a", "aac"])
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    p
}

fn ffmpeg_using(dir: &Path) -> usize {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test]
async fn seek_restarts_ffmpeg_at_the_requested_segment() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = long_source(tmp.path());
    let s = server(|c| c.segment_secs = 2.0).await;
    // 10-bit H.264: Chrome needs a full transcode.
    let sess = start(&s, &src, "chrome").await;
    assert_eq!(sess.decision.decision.as_str(), "transcode");
    let base = sess.master.trim_end_matches("master.m3u8").to_string();
    let media = get(s.addr, &format!("{base}video.m3u8")).await.text();
    assert_eq!(extinf(&media).len(), 20);
    let init = get(s.addr, &format!("{base}init.mp4")).await.body;
    // Jump straight to segment 15 (30 s), as a player does after a seek.
    let t = Instant::now();
    let seg = get(s.addr, &format!("{base}seg15.m4s")).await;
    assert_eq!(seg.status, 200, "{}", seg.text());
    eprintln!("segment 15 after a seek: {:?}", t.elapsed());
    let (_, start, end) = probe_segment(&init, &seg.body);
    assert!((start - 30.0).abs() < 0.05, "segment 15 starts at {start}");
    assert!((end - 32.0).abs() < 0.05, "segment 15 ends at {end}");
    // Players ignore the init's edit list: the fragments' own decode
    // times must say 30 s too, for video and audio alike.
    for t in tfdt_secs(&init, &seg.body) {
        assert!((t - 30.0).abs() < 0.05, "segment 15 tfdt {t}");
    }
    // And back to the start: a restart again, same timeline.
    let seg = get(s.addr, &format!("{base}seg1.m4s")).await;
    let (_, start, _) = probe_segment(&init, &seg.body);
    assert!((start - 2.0).abs() < 0.05, "segment 1 starts at {start}");
    for t in tfdt_secs(&init, &seg.body) {
        assert!((t - 2.0).abs() < 0.05, "segment 1 tfdt {t}");
    }
    let gone = get(s.addr, &format!("{base}seg20.m4s")).await;
    assert_eq!(gone.status, 404);
    s.svc.shutdown().await;
}

#[tokio::test]
async fn idle_session_stops_its_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = long_source(tmp.path());
    let s = server(|c| c.idle_timeout = Duration::from_secs(2)).await;
    let sess = start(&s, &src, "chrome").await;
    let base = sess.master.trim_end_matches("master.m3u8").to_string();
    let seg = get(s.addr, &format!("{base}seg0.m4s")).await;
    assert_eq!(seg.status, 200);
    let session_dir = s._root.path().join(&sess.id);
    assert!(session_dir.exists());
    // The player goes away: no more requests.
    let t = Instant::now();
    while s.svc.sessions() > 0 || ffmpeg_using(&session_dir) > 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "session not reaped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!session_dir.exists(), "session folder left behind");
    let r = get(s.addr, &format!("{base}seg1.m4s")).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn names_outside_the_pattern_are_refused() {
    if !have_ffmpeg() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("a.mkv");
    let st = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x90:duration=2",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let s = server(|_| {}).await;
    let sess = start(&s, &src, "chrome").await;
    std::fs::write(s._root.path().join(&sess.id).join("secret.txt"), "x").unwrap();
    for bad in [
        format!("/hls/{}/..%2F..%2F..%2Fetc%2Fpasswd", sess.id),
        format!("/hls/{}/secret.txt", sess.id),
        format!("/hls/{}/ffmpeg.m3u8", sess.id),
        format!("/hls/{}/seg-1.m4s", sess.id),
        format!("/hls/{}/seg01.m4s", sess.id),
        format!("/hls/{}/init.mp4.tmp", sess.id),
        "/hls/..%2F..%2Fetc/passwd".to_string(),
        "/hls/0123456789abcdef0123456789abcdef/master.m3u8".to_string(),
    ] {
        let r = get(s.addr, &bad).await;
        assert_eq!(r.status, 404, "{bad}: {}", r.text());
    }
    assert_eq!(get(s.addr, &sess.master).await.status, 200);
    s.svc.shutdown().await;
}

#[tokio::test]
async fn embedded_subtitles_are_webvtt_renditions() {
    let Some(dir) = samples() else { return };
    let s = server(|_| {}).await;
    let sess = start(&s, &sample(&dir, "multi_audio_subs_mkv"), "chrome").await;
    let master = get(s.addr, &sess.master).await.text();
    let renditions: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .collect();
    assert_eq!(renditions.len(), 2, "{master}");
    assert!(
        renditions[0].contains("LANGUAGE=\"en\"") && renditions[0].contains("DEFAULT=YES"),
        "{master}"
    );
    assert!(master.contains("SUBTITLES=\"subs\""));
    let base = sess.master.trim_end_matches("master.m3u8");
    let uri = renditions[0]
        .split("URI=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"');
    let pl = get(s.addr, &format!("{base}{uri}")).await.text();
    let vtt_name = pl.lines().find(|l| l.ends_with(".vtt")).unwrap();
    let vtt = get(s.addr, &format!("{base}{vtt_name}")).await;
    assert_eq!(vtt.header("content-type"), Some("text/vtt; charset=utf-8"));
    let vtt = vtt.text();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    assert!(vtt.contains("X-TIMESTAMP-MAP=MPEGTS:0,LOCAL:00:00:00.000"));
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let f = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "multi_audio_subs_mkv")
        .unwrap();
    let first = f["subtitles"][0]["first_cue_text"].as_str().unwrap();
    assert!(
        vtt.contains(first.lines().next().unwrap()),
        "first cue {first:?} missing:\n{vtt}"
    );
    s.svc.shutdown().await;
}

/// Acceptance 2: Chromium plays the Chrome HLS through the vendored hls.js;
/// currentTime advances, and after a seek to 50 % it passes the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chrome_hls_plays_in_chromium() {
    let Some(dir) = samples() else { return };
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let strict = std::env::var("TEST_SWARM_STRICT").is_ok_and(|v| v == "1");
    for need in [
        Path::new("/usr/bin/chromium"),
        &browser_dir.join("node_modules/playwright-core"),
    ] {
        if !need.exists() {
            let msg = format!("skipping: {} missing (run scripts/test.sh)", need.display());
            assert!(!strict, "{msg}");
            eprintln!("{msg}");
            return;
        }
    }
    let s = server(|_| {}).await;
    // HEVC Main 10 + AC-3: Chrome needs a full transcode to H.264 + AAC.
    let sess = start(&s, &sample(&dir, "hevc10_ac3_mkv"), "chrome").await;
    assert_eq!(sess.decision.decision.as_str(), "transcode");
    let shots = std::env::var_os("HLS_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("riptide-hls-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let url = format!("http://{}/player.html?src={}", s.addr, sess.master);
    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("play.mjs"))
        .arg(&url)
        .arg(&shots)
        .current_dir(&browser_dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(r["errors"], Value::Array(vec![]), "{r}");
    assert!(r["first"].as_f64().unwrap() > 1.0, "{r}");
    let target = r["target"].as_f64().unwrap();
    assert!(target > 4.0, "{r}");
    assert!(r["after"].as_f64().unwrap() > target, "{r}");
    eprintln!("screenshots in {}", shots.display());
    s.svc.shutdown().await;
}
