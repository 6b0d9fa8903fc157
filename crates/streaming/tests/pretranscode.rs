//! Pre-transcode queue on local files: the result plays directly on the
//! household's device, and a killed ffmpeg leaves nothing that looks ready.

use ffmpeg::{Input, Pool, PoolConfig};
use std::path::Path;
use streaming::decision::{DecisionKind, Options, plan_file};
use streaming::pretranscode::{JobState, PreTranscodeConfig, PreTranscoder, Request};
use streaming::profiles;

fn make(path: &Path, secs: u32) -> bool {
    std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x180:rate=25:duration={secs}"))
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=duration={secs}"),
            "-ac",
            "6",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p10le",
            "-c:a",
            "ac3",
        ])
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn result_plays_directly_and_cancel_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let film = dir.path().join("Film (2001).mkv");
    if !make(&film, 4) {
        eprintln!("skipping: ffmpeg not installed (run scripts/test.sh)");
        return;
    }
    let chrome = profiles::builtin("chrome").unwrap();
    let pt = PreTranscoder::new(
        PreTranscodeConfig::new(vec![chrome.clone()]),
        Pool::new(PoolConfig::default()),
    )
    .unwrap();
    let id = pt
        .submit(Request {
            input: Input::File(film.clone()),
            film: film.clone(),
            priority: 0,
        })
        .unwrap();
    let done = pt.wait(id).await.unwrap();
    let JobState::Done { output, .. } = &done.state else {
        panic!("{done:?}")
    };
    assert_eq!(output, &dir.path().join("Film (2001).riptide.mp4"));
    let (_, d) = plan_file(output, &chrome, &Options::default())
        .await
        .unwrap();
    assert_eq!(d.decision, DecisionKind::DirectPlay, "{:?}", d.reasons);
    let st = pt.status();
    assert_eq!(st.queued, 0);
    assert!(st.realtime_factor.unwrap() > 0.0);

    // Cancelled while ffmpeg runs: neither the output nor its temp file stays.
    let long = dir.path().join("Long.mkv");
    assert!(make(&long, 120));
    let id = pt
        .submit(Request {
            input: Input::File(long.clone()),
            film: long.clone(),
            priority: 5,
        })
        .unwrap();
    while pt.job(id).unwrap().progress_secs <= 0.0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    pt.cancel(id);
    let j = pt.wait(id).await.unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("Long.riptide") || n.starts_with(".Long")),
        "{names:?}"
    );
}
