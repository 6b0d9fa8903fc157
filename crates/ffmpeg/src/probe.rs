//! `ffprobe`: container, duration and streams of a media file.

use crate::input::{Input, InputError};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Probing a file never takes longer than this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// ffprobe's JSON for sane files is a few KiB; refuse absurd output.
const MAX_OUTPUT: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("cannot run ffprobe (is ffmpeg installed?): {0}")]
    Spawn(std::io::Error),
    #[error("ffprobe took longer than {0:?}")]
    Timeout(Duration),
    #[error("ffprobe could not read the file: {0}")]
    Failed(String),
    #[error("ffprobe output is not what we expect: {0}")]
    Output(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaInfo {
    /// ffprobe's `format_name`, e.g. `mov,mp4,m4a,3gp,3g2,mj2` or `matroska,webm`.
    pub format_name: String,
    pub duration_secs: Option<f64>,
    /// Overall bit rate (bits/s).
    pub bit_rate: Option<u64>,
    pub size: Option<u64>,
    pub video: Vec<VideoStream>,
    pub audio: Vec<AudioStream>,
    pub subtitles: Vec<SubtitleStream>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VideoStream {
    pub index: u32,
    pub codec: String,
    pub profile: Option<String>,
    pub level: Option<i64>,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: Option<String>,
    /// Bits per sample from `bits_per_raw_sample` or the pixel format.
    pub bit_depth: Option<u8>,
    /// `r_frame_rate`, e.g. `24000/1001`.
    pub frame_rate: Option<String>,
    pub codec_tag: Option<String>,
    pub bit_rate: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AudioStream {
    pub index: u32,
    pub codec: String,
    pub profile: Option<String>,
    pub channels: u32,
    pub sample_rate: Option<u32>,
    pub language: Option<String>,
    pub title: Option<String>,
    pub default: bool,
    pub bit_rate: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubtitleStream {
    pub index: u32,
    pub codec: String,
    pub language: Option<String>,
    pub title: Option<String>,
    pub default: bool,
    pub forced: bool,
}

impl MediaInfo {
    /// A short container name: `mp4`, `mkv`, `webm`, `avi`, … from
    /// ffprobe's format list and the file extension.
    pub fn container(&self, path: &Path) -> String {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let f = self.format_name.as_str();
        if f.contains("matroska") {
            if ext == "webm" { "webm" } else { "mkv" }.to_string()
        } else if f.contains("mp4") || f.contains("mov") {
            if ext == "mov" { "mov" } else { "mp4" }.to_string()
        } else {
            f.split(',').next().unwrap_or("").to_string()
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<String>,
    bit_rate: Option<String>,
    size: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawStream {
    index: Option<u32>,
    codec_type: Option<String>,
    codec_name: Option<String>,
    profile: Option<String>,
    level: Option<i64>,
    width: Option<u32>,
    height: Option<u32>,
    pix_fmt: Option<String>,
    bits_per_raw_sample: Option<String>,
    r_frame_rate: Option<String>,
    codec_tag_string: Option<String>,
    channels: Option<u32>,
    sample_rate: Option<String>,
    bit_rate: Option<String>,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
    #[serde(default)]
    disposition: std::collections::HashMap<String, i64>,
}

fn num<T: std::str::FromStr>(s: &Option<String>) -> Option<T> {
    s.as_deref().and_then(|v| v.parse().ok())
}

fn bit_depth(pix_fmt: Option<&str>, raw: Option<u8>) -> Option<u8> {
    if let Some(d) = raw.filter(|d| *d > 0) {
        return Some(d);
    }
    let p = pix_fmt?;
    Some(if p.contains("p10") {
        10
    } else if p.contains("p12") {
        12
    } else {
        8
    })
}

/// Parses `ffprobe -print_format json -show_format -show_streams` output.
pub fn parse_json(bytes: &[u8]) -> Result<MediaInfo, ProbeError> {
    if bytes.len() > MAX_OUTPUT {
        return Err(ProbeError::Output(format!("{} bytes of JSON", bytes.len())));
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ProbeError::Output(e.to_string()))?;
    let format = raw
        .format
        .ok_or_else(|| ProbeError::Output("no format section".into()))?;
    let mut info = MediaInfo {
        format_name: format.format_name.unwrap_or_default(),
        duration_secs: num::<f64>(&format.duration).filter(|d| d.is_finite() && *d >= 0.0),
        bit_rate: num(&format.bit_rate),
        size: num(&format.size),
        ..MediaInfo::default()
    };
    for s in raw.streams {
        let index = s.index.unwrap_or(0);
        let codec = s.codec_name.clone().unwrap_or_default();
        let lang = s.tags.get("language").cloned().filter(|l| l != "und");
        let title = s.tags.get("title").cloned();
        let flag = |k: &str| s.disposition.get(k).copied().unwrap_or(0) != 0;
        match s.codec_type.as_deref() {
            Some("video") => {
                // Cover art is a "video" stream with attached_pic set.
                if flag("attached_pic") {
                    continue;
                }
                info.video.push(VideoStream {
                    index,
                    codec,
                    profile: s.profile.clone(),
                    level: s.level,
                    width: s.width.unwrap_or(0),
                    height: s.height.unwrap_or(0),
                    bit_depth: bit_depth(s.pix_fmt.as_deref(), num(&s.bits_per_raw_sample)),
                    pix_fmt: s.pix_fmt.clone(),
                    frame_rate: s.r_frame_rate.clone(),
                    codec_tag: s.codec_tag_string.clone().filter(|t| !t.starts_with('[')),
                    bit_rate: num(&s.bit_rate),
                });
            }
            Some("audio") => info.audio.push(AudioStream {
                index,
                codec,
                profile: s.profile.clone(),
                channels: s.channels.unwrap_or(0),
                sample_rate: num(&s.sample_rate),
                language: lang,
                title,
                default: flag("default"),
                bit_rate: num(&s.bit_rate),
            }),
            Some("subtitle") => info.subtitles.push(SubtitleStream {
                index,
                codec,
                language: lang,
                title,
                default: flag("default"),
                forced: flag("forced"),
            }),
            _ => {}
        }
    }
    Ok(info)
}

/// Runs ffprobe on `path`.
pub async fn probe(path: &Path) -> Result<MediaInfo, ProbeError> {
    probe_input(&Input::File(path.to_path_buf())).await
}

/// Runs ffprobe on a file or an HTTP(S) URL.
pub async fn probe_input(input: &Input) -> Result<MediaInfo, ProbeError> {
    let arg = input.arg()?;
    let child = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            "-protocol_whitelist",
            input.protocol_whitelist(),
            "-i",
        ])
        .arg(&arg)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PROBE_TIMEOUT, child)
        .await
        .map_err(|_| ProbeError::Timeout(PROBE_TIMEOUT))?
        .map_err(ProbeError::Spawn)?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.lines().last().unwrap_or("no error message").trim();
        return Err(ProbeError::Failed(msg.chars().take(300).collect()));
    }
    parse_json(&out.stdout)
}

/// The time of the last packet in the file, reading only from `from_secs`
/// on (a seek near the end). A download cut short still probes with its
/// full duration (MKV headers say so), but its packets stop early.
pub async fn last_packet_secs(input: &Input, from_secs: f64) -> Result<Option<f64>, ProbeError> {
    let arg = input.arg()?;
    let child = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-protocol_whitelist",
            input.protocol_whitelist(),
        ])
        .arg("-read_intervals")
        .arg(format!("{:.3}%", from_secs.max(0.0)))
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0", "-i"])
        .arg(&arg)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PROBE_TIMEOUT, child)
        .await
        .map_err(|_| ProbeError::Timeout(PROBE_TIMEOUT))?
        .map_err(ProbeError::Spawn)?;
    if out.stdout.len() > MAX_OUTPUT {
        return Err(ProbeError::Output("too many packets".into()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
        .filter(|t| t.is_finite())
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t)))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = r#"{
      "streams": [
        {"index": 0, "codec_name": "hevc", "profile": "Main 10", "codec_type": "video", "codec_tag_string": "hvc1",
         "width": 320, "height": 180, "pix_fmt": "yuv420p10le", "level": 60, "r_frame_rate": "24/1",
         "disposition": {"default": 1, "attached_pic": 0}},
        {"index": 1, "codec_name": "ac3", "codec_type": "audio", "channels": 6, "sample_rate": "48000",
         "tags": {"language": "eng"}, "disposition": {"default": 1}},
        {"index": 2, "codec_name": "subrip", "codec_type": "subtitle", "tags": {"language": "fre", "title": "Forced"},
         "disposition": {"default": 0, "forced": 1}},
        {"index": 3, "codec_name": "mjpeg", "codec_type": "video", "disposition": {"attached_pic": 1}}
      ],
      "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "10.000000", "size": "123456", "bit_rate": "98765"}
    }"#;

    #[test]
    fn parses_ffprobe_json() {
        let m = parse_json(SAMPLE.as_bytes()).unwrap();
        assert_eq!(m.container(Path::new("a.mp4")), "mp4");
        assert_eq!(m.duration_secs, Some(10.0));
        assert_eq!(m.video.len(), 1, "cover art is not a video stream");
        let v = &m.video[0];
        assert_eq!(
            (v.codec.as_str(), v.bit_depth, v.codec_tag.as_deref()),
            ("hevc", Some(10), Some("hvc1"))
        );
        assert_eq!(m.audio[0].channels, 6);
        assert_eq!(m.audio[0].language.as_deref(), Some("eng"));
        assert!(m.subtitles[0].forced && !m.subtitles[0].default);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_json(b"not json").is_err());
        assert!(parse_json(b"{}").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_json(&bytes);
        }
    }
}
