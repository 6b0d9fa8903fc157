//! `riptide playback plan` and `riptide playback profiles`.

use std::path::Path;
use std::process::Command;

fn riptide(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(args)
        .output()
        .expect("run riptide")
}

fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok();
    if !ok {
        eprintln!("skipping: ffmpeg not installed (run scripts/test.sh)");
    }
    ok
}

/// 2 s of H.264 + AC-3 5.1 in MKV: Safari needs a remux.
fn make_mkv(path: &Path) {
    let st = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=160x90:rate=25:duration=2")
        .args(["-f", "lavfi", "-i", "sine=duration=2", "-ac", "6"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "ac3",
            "-f",
            "matroska",
        ])
        .arg(format!("file:{}", path.display()))
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn profiles_lists_builtin_names() {
    let out = riptide(&["playback", "profiles"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in [
        "chrome",
        "firefox",
        "safari",
        "apple-tv",
        "android-tv",
        "vlc",
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing from:\n{text}"
        );
    }
}

#[test]
fn plan_json_has_decision_reasons_and_ffmpeg_plan() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A name that would be an option and shell syntax if it were ever
    // pasted into a command line.
    let file = dir.path().join("-i x;|$(id).mkv");
    make_mkv(&file);
    let f = file.to_str().unwrap();
    let out = riptide(&["playback", "plan", f, "--profile", "safari", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "remux");
    assert_eq!(v["reasons"][0], "container MKV not supported by Safari");
    let args: Vec<&str> = v["ffmpeg"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let i = args.iter().position(|a| *a == "-i").unwrap();
    assert_eq!(args[i + 1], format!("file:{f}"));
    assert!(args.windows(2).any(|w| w == ["-c:v", "copy"]));
    assert_eq!(v["ffmpeg"]["video"]["action"], "copy");

    let out = riptide(&["playback", "plan", f, "--profile", "vlc", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "direct_play");
    assert!(v["ffmpeg"]["args"].is_null());

    let out = riptide(&["playback", "plan", f, "--profile", "chrome"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("transcode_audio on Chrome"), "{text}");
    assert!(
        text.contains("audio AC-3 not supported by Chrome"),
        "{text}"
    );

    let out = riptide(&["playback", "plan", f, "--profile", "netscape"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown profile") && err.contains("apple-tv"),
        "{err}"
    );
}
