//! Does pinning pool workers to CPUs help? Runs the same batch of H.264
//! transcodes through a pool with and without CPU affinity, alternating,
//! and prints the median wall time of each.
//!
//! `cargo bench -p ffmpeg --bench pool_affinity [-- JOBS ROUNDS]`

use ffmpeg::{
    AudioCodec, AudioOut, Input, Job, Output, Pool, PoolConfig, Priority, Progress, VideoCodec,
    VideoEncode, VideoOut,
};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(6);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src.mkv");
    // 10 s of 1280x720 test pattern: enough work per job that process
    // start-up does not dominate.
    let st = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1280x720:rate=24:duration=10")
        .args(["-f", "lavfi", "-i", "sine=duration=10"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(&src)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    let job = Job {
        input: Input::File(src),
        start_secs: None,
        video_stream: 0,
        audio_stream: Some(1),
        video: VideoOut::Encode(VideoEncode {
            codec: VideoCodec::H264,
            max_height: Some(720),
            source_height: 720,
            bitrate_kbps: 3000,
            keyframe_secs: Some(3.0),
            hw: Default::default(),
        }),
        audio: AudioOut::Encode {
            codec: AudioCodec::Aac,
            channels: 2,
            bitrate_kbps: 128,
        },
        output: Output::Null,
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, pin) in [false, true].into_iter().enumerate() {
            let pool = Pool::new(PoolConfig {
                pin_cpus: pin,
                ..PoolConfig::default()
            });
            let t = rt.block_on(batch(&pool, &job, jobs));
            eprintln!("round {round} pin={pin}: {t:.2?}");
            times[i].push(t);
        }
    }
    let workers = Pool::new(PoolConfig::default()).workers();
    println!("| pinning | workers | jobs | median batch s | per job s |");
    println!("|---|---|---|---|---|");
    for (i, label) in ["off", "on"].iter().enumerate() {
        times[i].sort();
        let m = times[i][times[i].len() / 2].as_secs_f64();
        println!(
            "| {label} | {workers} | {jobs} | {m:.2} | {:.2} |",
            m / jobs as f64
        );
    }
}

async fn batch(pool: &Pool, job: &Job, n: usize) -> Duration {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (pool, job) = (pool.clone(), job.clone());
        set.spawn(async move {
            let (tx, _rx) = watch::channel(Progress::default());
            pool.run(Priority::Interactive, &job, &CancellationToken::new(), &tx)
                .await
                .expect("transcode");
        });
    }
    while set.join_next().await.is_some() {}
    start.elapsed()
}
