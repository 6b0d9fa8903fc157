//! Real ffmpeg runs: hostile file names, progress, cancellation, pool
//! shutdown. Skips with a reason when ffmpeg is not installed.

use ffmpeg::{
    AudioCodec, AudioOut, Input, Job, Output, Pool, PoolConfig, Priority, Progress, RunError,
    VideoCodec, VideoEncode, VideoOut,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn have_ffmpeg() -> bool {
    let ok = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: ffmpeg not installed (run scripts/test.sh)");
    }
    ok
}

/// A 2 s 160x90 H.264 + AAC MKV made with ffmpeg's test sources.
fn make_source(path: &Path) {
    let st = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=160x90:rate=25:duration=2")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=2"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-f",
            "matroska",
        ])
        .arg(ffmpeg::output_arg(path).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
}

fn remux_job(input: Input, out: PathBuf) -> Job {
    Job {
        input,
        start_secs: None,
        video_stream: 0,
        audio_stream: Some(1),
        video: VideoOut::Copy { tag: None },
        audio: AudioOut::Copy,
        output: Output::Mp4 { path: out },
    }
}

/// ffmpeg children of this process that are still alive.
fn ffmpeg_children() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').unwrap() + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ppid: u32 = fields[1].parse().unwrap_or(0);
        if ppid == me && comm.starts_with("ffmpeg") && fields[0] != "Z" {
            found.push(pid);
        }
    }
    found
}

async fn wait_no_children() {
    for _ in 0..200 {
        if ffmpeg_children().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("ffmpeg still running: {:?}", ffmpeg_children());
}

#[tokio::test]
async fn hostile_file_names_are_just_files() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(PoolConfig::default());
    let names = [
        "-i",
        "-y.mkv",
        "|cat.mkv",
        "a;touch PWNED;.mkv",
        "concat:a.mkv|b.mkv",
        "file:x.mkv",
        "$(touch PWNED).mkv",
        "`touch PWNED`.mkv",
        "pipe:1",
    ];
    for name in names {
        let src = dir.path().join(name);
        make_source(&src);
        let info = ffmpeg::probe(&src).await.unwrap();
        assert_eq!(info.video.len(), 1, "{name}");
        let out = dir.path().join(format!("-{name}.out.mp4"));
        let (tx, _rx) = watch::channel(Progress::default());
        pool.run(
            Priority::Interactive,
            &remux_job(Input::File(src.clone()), out.clone()),
            &CancellationToken::new(),
            &tx,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out_info = ffmpeg::probe(&out).await.unwrap();
        assert_eq!(out_info.container(&out), "mp4");
    }
    // A newline can never reach ffmpeg.
    let nl = dir.path().join("a\n-i evil.mkv");
    assert!(matches!(
        ffmpeg::probe(&nl).await,
        Err(ffmpeg::ProbeError::Input(_))
    ));
    let mut listed: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert!(!listed.iter().any(|n| n == "PWNED"), "{listed:?}");
    // Exactly the sources and the outputs; nothing else was created.
    assert_eq!(listed.len(), names.len() * 2, "{listed:?}");
}

#[tokio::test]
async fn transcode_reports_progress() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mkv");
    make_source(&src);
    let out = dir.path().join("out.mp4");
    let job = Job {
        video: VideoOut::Encode(VideoEncode {
            codec: VideoCodec::H264,
            max_height: Some(72),
            source_height: 90,
            bitrate_kbps: 300,
            keyframe_secs: Some(1.0),
            hw: Default::default(),
        }),
        audio: AudioOut::Encode {
            codec: AudioCodec::Aac,
            channels: 2,
            bitrate_kbps: 96,
        },
        ..remux_job(Input::File(src), out.clone())
    };
    let (tx, rx) = watch::channel(Progress::default());
    Pool::new(PoolConfig::default())
        .run(Priority::Background, &job, &CancellationToken::new(), &tx)
        .await
        .unwrap();
    let p = rx.borrow().clone();
    assert!(p.ended, "{p:?}");
    assert_eq!(p.frame, 50, "{p:?}");
    assert!(p.out_time > Duration::ZERO, "{p:?}");
    let info = ffmpeg::probe(&out).await.unwrap();
    assert_eq!(info.video[0].height, 72);
    assert_eq!(info.video[0].codec, "h264");
}

/// Serves an HTTP response that stops after the first bytes of a file,
/// like a torrent stream whose next piece never arrives.
async fn stalling_server(head: Vec<u8>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let head = head.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let hdr = "HTTP/1.1 200 OK\r\nContent-Type: video/x-matroska\r\n\r\n";
                let _ = s.write_all(hdr.as_bytes()).await;
                let _ = s.write_all(&head).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        }
    });
    format!("http://{addr}/stream/x/0")
}

#[tokio::test]
async fn cancel_and_shutdown_kill_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mkv");
    make_source(&src);
    let bytes = std::fs::read(&src).unwrap();
    let url = stalling_server(bytes[..bytes.len() / 2].to_vec()).await;
    let pool = Pool::new(PoolConfig::default());

    // 1. Cancel.
    let cancel = CancellationToken::new();
    let job = remux_job(Input::Url(url.clone()), dir.path().join("a.mp4"));
    let run = {
        let (pool, cancel, job) = (pool.clone(), cancel.clone(), job.clone());
        tokio::spawn(async move {
            let (tx, _rx) = watch::channel(Progress::default());
            pool.run(Priority::Interactive, &job, &cancel, &tx).await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ffmpeg_children().len(), 1, "ffmpeg is waiting for data");
    cancel.cancel();
    assert!(matches!(run.await.unwrap(), Err(RunError::Cancelled)));
    wait_no_children().await;

    // 2. Dropping the future.
    let run = {
        let (pool, job) = (pool.clone(), job.clone());
        tokio::spawn(async move {
            let (tx, _rx) = watch::channel(Progress::default());
            pool.run(Priority::Interactive, &job, &CancellationToken::new(), &tx)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ffmpeg_children().len(), 1);
    run.abort();
    let _ = run.await;
    wait_no_children().await;

    // 3. Shutdown kills everything running and refuses new work.
    let mut runs = Vec::new();
    for i in 0..2 {
        let pool = pool.clone();
        let job = remux_job(Input::Url(url.clone()), dir.path().join(format!("{i}.mp4")));
        runs.push(tokio::spawn(async move {
            let (tx, _rx) = watch::channel(Progress::default());
            pool.run(Priority::Interactive, &job, &CancellationToken::new(), &tx)
                .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.status().running, 2);
    pool.shutdown(Duration::from_secs(5)).await;
    for r in runs {
        assert!(matches!(r.await.unwrap(), Err(RunError::ShuttingDown)));
    }
    wait_no_children().await;
    let (tx, _rx) = watch::channel(Progress::default());
    assert!(matches!(
        pool.run(Priority::Interactive, &job, &CancellationToken::new(), &tx)
            .await,
        Err(RunError::ShuttingDown)
    ));
}

#[tokio::test]
async fn background_work_leaves_a_slot_for_playback() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mkv");
    make_source(&src);
    let bytes = std::fs::read(&src).unwrap();
    let url = stalling_server(bytes[..bytes.len() / 2].to_vec()).await;
    let pool = Pool::new(PoolConfig {
        workers: 2,
        ..PoolConfig::default()
    });
    let cancel = CancellationToken::new();
    let mut bg = Vec::new();
    for i in 0..2 {
        let (pool, cancel) = (pool.clone(), cancel.clone());
        let job = remux_job(
            Input::Url(url.clone()),
            dir.path().join(format!("bg{i}.mp4")),
        );
        bg.push(tokio::spawn(async move {
            let (tx, _rx) = watch::channel(Progress::default());
            pool.run(Priority::Background, &job, &cancel, &tx).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = pool.status();
    assert_eq!((st.running, st.waiting), (1, 1), "{st:?}");
    // Playback still gets a slot right away.
    let out = dir.path().join("fg.mp4");
    let (tx, _rx) = watch::channel(Progress::default());
    tokio::time::timeout(
        Duration::from_secs(20),
        pool.run(
            Priority::Interactive,
            &remux_job(Input::File(src), out),
            &CancellationToken::new(),
            &tx,
        ),
    )
    .await
    .expect("interactive job was not blocked by background work")
    .unwrap();
    cancel.cancel();
    for b in bg {
        assert!(matches!(b.await.unwrap(), Err(RunError::Cancelled)));
    }
    wait_no_children().await;
}
