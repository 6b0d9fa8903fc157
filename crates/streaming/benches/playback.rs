//! Playback latencies on this machine (issue 8, acceptance 4):
//! - first HLS segment after a request for a 720p H.264 transcode,
//! - a seek: the first segment at 75 % (ffmpeg restarted there),
//! - realtime factor of a pre-transcode of the same film.
//!
//! `cargo bench -p streaming --bench playback [-- ROUNDS]`

use ffmpeg::{Input, Pool, PoolConfig};
use std::time::{Duration, Instant};
use streaming::hls::{HlsConfig, HlsService};
use streaming::pretranscode::{JobState, PreTranscodeConfig, PreTranscoder, Request};
use streaming::profiles;

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("film.mkv");
    // 60 s of 1280x720 10-bit H.264 + AAC: Chrome cannot play 10-bit H.264,
    // so it needs a full transcode to 720p 8-bit H.264.
    let st = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1280x720:rate=24:duration=60")
        .args(["-f", "lavfi", "-i", "sine=duration=60"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
        ])
        .args(["-c:a", "aac"])
        .arg(&src)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let info = ffmpeg::probe(&src).await.expect("probe");
        let chrome = profiles::builtin("chrome").expect("chrome");
        let mut first = Vec::new();
        let mut seek = Vec::new();
        for _ in 0..rounds {
            let root = tempfile::tempdir().expect("tempdir");
            let svc = HlsService::new(HlsConfig::new(root.path().into()), Pool::new(PoolConfig::default()));
            let t = Instant::now();
            let s = svc
                .start(Input::File(src.clone()), &src, &info, &chrome)
                .await
                .expect("session");
            svc.file(&s.id, "master.m3u8").await.expect("master");
            svc.file(&s.id, "video.m3u8").await.expect("media");
            svc.file(&s.id, "init.mp4").await.expect("init");
            svc.file(&s.id, "seg0.m4s").await.expect("seg0");
            first.push(t.elapsed());
            let t = Instant::now();
            svc.file(&s.id, "seg15.m4s").await.expect("seg15");
            seek.push(t.elapsed());
            svc.shutdown().await;
        }
        let pt = PreTranscoder::new(PreTranscodeConfig::new(vec![chrome.clone()]), Pool::new(PoolConfig::default()))
            .expect("pretranscoder");
        let film = dir.path().join("copy.mkv");
        std::fs::copy(&src, &film).expect("copy");
        let id = pt
            .submit(Request { input: Input::File(film.clone()), film, priority: 0 })
            .expect("submit");
        let done = pt.wait(id).await.expect("job");
        let rtf = match done.state {
            JobState::Done { realtime_factor, secs, .. } => {
                eprintln!("pre-transcode of 60 s took {secs:.1} s");
                realtime_factor
            }
            other => panic!("pre-transcode failed: {other:?}"),
        };
        first.sort();
        seek.sort();
        let med = |v: &[Duration]| v[v.len() / 2].as_secs_f64();
        println!("| measure | median | min | max | runs |");
        println!("|---|---|---|---|---|");
        println!(
            "| first segment, 720p H.264 transcode (request → seg0 ready) | {:.2} s | {:.2} s | {:.2} s | {rounds} |",
            med(&first), first[0].as_secs_f64(), first[rounds - 1].as_secs_f64()
        );
        println!(
            "| seek to 75 % (request → seg15 ready, ffmpeg restarted) | {:.2} s | {:.2} s | {:.2} s | {rounds} |",
            med(&seek), seek[0].as_secs_f64(), seek[rounds - 1].as_secs_f64()
        );
        println!("| pre-transcode realtime factor (60 s 720p → H.264 MP4, background pool slot) | {rtf:.2}× | | | 1 |");
    });
}
