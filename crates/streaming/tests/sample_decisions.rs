//! Acceptance 1 of issue 8: decisions for every file of the shared sample
//! set. `safari` and `apple-tv` must agree with the manifest's `apple`
//! verdicts; every built-in profile must match the table below.
//!
//! The set is built by `../shared/media/make-samples.sh` into
//! `$MEDIA_SAMPLES_DIR`, or a cache folder under the temp dir; without
//! `../shared` (a plain clone) the test prints why and passes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use streaming::decision::{DecisionKind, Options, plan_file};
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
    if std::process::Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_err()
    {
        eprintln!("skipping: ffmpeg/ffprobe not installed (run scripts/test.sh)");
        return None;
    }
    let dir = std::env::var_os("MEDIA_SAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("riptide-media-samples-full"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(&script)
        .arg(&dir)
        .output()
        .expect("run make-samples.sh");
    assert!(
        out.status.success(),
        "make-samples.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dir)
}

const PROFILES: [&str; 7] = [
    "chrome",
    "firefox",
    "safari",
    "apple-tv",
    "android-tv",
    "vlc",
    "infuse",
];

/// Expected decision per sample id, in the order of [`PROFILES`]:
/// D direct play, R remux, A audio transcode, T transcode, E cannot play
/// (broken or truncated file).
const TABLE: &[(&str, &str)] = &[
    ("h264_aac_mp4_faststart", "DDDDDDD"),
    ("h264_aac_mp4_moov_end", "DDDDDDD"),
    ("external_subs_video", "DDDDDDD"),
    ("subtitle_sync_video", "DDDDDDD"),
    ("hevc10_ac3_mkv", "TTRRDDD"),
    ("hevc10_ac3_mp4_hvc1", "TTDDDDD"),
    ("hevc10_ac3_mp4_hev1", "TTRRDDD"),
    ("hevc_dts_mkv", "TTAAADD"),
    ("hevc10_truehd_mkv", "TTAAADD"),
    ("mpeg4_mp3_avi", "TTTTTDD"),
    ("vp9_opus_webm", "DDTTDDD"),
    ("multi_audio_subs_mkv", "RRRRDDD"),
    ("tv_episode", "AARRDDD"),
    ("anime_episode", "TTTTTDD"),
    ("release_main", "AARRDDD"),
    ("release_sample", "AARRDDD"),
    ("broken_truncated_mkv", "EEEEEEE"),
    ("broken_truncated_mp4", "EEEEEEE"),
    ("broken_zero_bytes_mkv", "EEEEEEE"),
];

fn letter(r: &Result<DecisionKind, String>) -> char {
    match r {
        Ok(DecisionKind::DirectPlay) => 'D',
        Ok(DecisionKind::Remux) => 'R',
        Ok(DecisionKind::TranscodeAudio) => 'A',
        Ok(DecisionKind::Transcode) => 'T',
        Err(_) => 'E',
    }
}

#[tokio::test]
async fn decisions_match_manifest_and_table() {
    let Some(dir) = samples() else { return };
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let files: Vec<&Value> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "video")
        .collect();
    assert!(files.len() >= 19, "full set expected, got {}", files.len());
    let mut problems = Vec::new();
    let mut checked = 0;
    for f in &files {
        let id = f["id"].as_str().unwrap();
        let path = dir.join(f["path"].as_str().unwrap());
        let expected = TABLE
            .iter()
            .find(|(i, _)| *i == id)
            .unwrap_or_else(|| {
                panic!("sample {id} is not in the table; add its expected decisions")
            })
            .1;
        let mut got = String::new();
        for (k, name) in PROFILES.iter().enumerate() {
            let p = profiles::builtin(name).unwrap();
            let r = plan_file(&path, &p, &Options::default())
                .await
                .map(|(_, d)| d.decision)
                .map_err(|e| e.to_string());
            got.push(letter(&r));
            if matches!(*name, "safari" | "apple-tv") {
                let apple = &f["apple"];
                let direct = apple["direct_play"].as_bool().unwrap();
                let remux = apple["remux_sufficient"].as_bool().unwrap();
                let ok = match &r {
                    Ok(DecisionKind::DirectPlay) => direct,
                    Ok(DecisionKind::Remux) => !direct && remux,
                    Ok(_) | Err(_) => !direct && !remux,
                };
                if !ok {
                    problems.push(format!("{id} on {name}: {r:?}, manifest apple = {apple}"));
                }
            }
            let want = expected.as_bytes()[k] as char;
            if letter(&r) != want {
                problems.push(format!("{id} on {name}: got {r:?}, table says {want}"));
            }
            checked += 1;
        }
        eprintln!("{id:<24} {got}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(checked, files.len() * PROFILES.len());
}

/// The reasons say what is wrong in words a person understands.
#[tokio::test]
async fn reasons_are_human() {
    let Some(dir) = samples() else { return };
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let path_of = |id: &str| {
        let f = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap();
        dir.join(f["path"].as_str().unwrap())
    };
    let cases = [
        (
            "hevc_dts_mkv",
            "safari",
            "audio DTS not supported by Safari",
        ),
        (
            "hevc10_ac3_mkv",
            "apple-tv",
            "container MKV not supported by Apple TV",
        ),
        (
            "hevc10_ac3_mp4_hev1",
            "safari",
            "HEVC is tagged hev1; Safari plays only hvc1 (a remux retags it)",
        ),
        (
            "anime_episode",
            "chrome",
            "video H.264 High 10 (10-bit) not supported by Chrome",
        ),
        (
            "tv_episode",
            "firefox",
            "audio E-AC-3 not supported by Firefox",
        ),
    ];
    for (id, profile, reason) in cases {
        let p = profiles::builtin(profile).unwrap();
        let (_, d) = plan_file(&path_of(id), &p, &Options::default())
            .await
            .unwrap();
        assert!(
            d.reasons.iter().any(|r| r == reason),
            "{id} on {profile}: {:?}",
            d.reasons
        );
    }
    let p = profiles::builtin("vlc").unwrap();
    let e = plan_file(&path_of("broken_truncated_mkv"), &p, &Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated") && e.contains("download"), "{e}");
}
