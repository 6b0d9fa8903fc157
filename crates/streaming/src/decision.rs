//! Playback decisions: for one file and one device profile, play it as it
//! is, change only the container, transcode only the audio, or transcode.
//!
//! The decision carries human reasons ("audio DTS not supported by
//! Safari") and the ffmpeg plan that makes the file playable.

use crate::profiles::Profile;
use ffmpeg::{
    AudioCodec, AudioOut, AudioStream, HwAccel, Input, Job, MediaInfo, Output, VideoCodec,
    VideoEncode, VideoOut, VideoStream,
};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// The file plays as it is.
    DirectPlay,
    /// Streams are fine; the container (or the HEVC tag) changes.
    Remux,
    /// Video is copied, audio is transcoded.
    TranscodeAudio,
    /// Video is transcoded.
    Transcode,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::DirectPlay => "direct_play",
            DecisionKind::Remux => "remux",
            DecisionKind::TranscodeAudio => "transcode_audio",
            DecisionKind::Transcode => "transcode",
        }
    }
}

/// How an embedded subtitle track reaches the player.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubtitlePlan {
    pub index: u32,
    pub codec: String,
    pub language: Option<String>,
    pub default: bool,
    pub forced: bool,
    /// `native` (the client renders it), `webvtt` (converted, styling
    /// lost) or `burn_in` (a bitmap the client cannot show: only by
    /// transcoding with it drawn into the picture).
    pub delivery: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub decision: DecisionKind,
    pub profile: String,
    pub reasons: Vec<String>,
    /// Container of the source (`mkv`) and of what is played (`mp4`,
    /// or the source's on direct play).
    pub source_container: String,
    pub target_container: String,
    pub video_stream: u32,
    pub audio_stream: Option<u32>,
    pub video: VideoOut,
    pub audio: AudioOut,
    pub subtitles: Vec<SubtitlePlan>,
    /// Source height and duration, for HLS and bit rates.
    pub height: u32,
    pub duration_secs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "the file has no video stream that ffprobe can read; check that it is a video and complete"
    )]
    NoVideo,
    #[error(
        "the file is truncated: its packets stop at {last:.1} s of {duration:.1} s; \
         wait for the download to finish or download it again"
    )]
    Truncated { last: f64, duration: f64 },
}

/// Choices the client makes.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Absolute index of the audio track to play (default: the default
    /// track, else the first).
    pub audio_stream: Option<u32>,
    /// Absolute index of a subtitle track to show.
    pub subtitle_stream: Option<u32>,
    pub hw: HwAccel,
}

const TEXT_SUBTITLES: &[&str] = &["subrip", "ass", "ssa", "webvtt", "mov_text", "text"];
/// Codecs an MP4/fMP4 can carry (what a remux may copy).
const MP4_VIDEO: &[&str] = &["h264", "hevc", "av1", "vp9"];
const MP4_AUDIO: &[&str] = &["aac", "ac3", "eac3", "mp3", "opus", "flac", "alac"];

pub fn display_codec(c: &str) -> String {
    match c {
        "h264" => "H.264",
        "hevc" => "HEVC",
        "mpeg4" => "MPEG-4 Part 2",
        "mpeg2video" => "MPEG-2",
        "vp8" => "VP8",
        "vp9" => "VP9",
        "av1" => "AV1",
        "aac" => "AAC",
        "ac3" => "AC-3",
        "eac3" => "E-AC-3",
        "dts" => "DTS",
        "truehd" => "TrueHD",
        "mp3" => "MP3",
        "opus" => "Opus",
        "vorbis" => "Vorbis",
        "flac" => "FLAC",
        other => return other.to_string(),
    }
    .to_string()
}

/// The audio track played by default: the flagged one, else the first.
pub fn default_audio(info: &MediaInfo) -> Option<&AudioStream> {
    info.audio
        .iter()
        .find(|a| a.default)
        .or_else(|| info.audio.first())
}

/// Decides how `info` (probed from `path`) plays on `profile`.
pub fn decide(
    info: &MediaInfo,
    path: &Path,
    profile: &Profile,
    opts: &Options,
) -> Result<Decision, PlanError> {
    let video = info.video.first().ok_or(PlanError::NoVideo)?;
    let audio = match opts.audio_stream {
        Some(i) => info.audio.iter().find(|a| a.index == i),
        None => default_audio(info),
    };
    let container = info.container(path);
    let who = &profile.display;
    let mut reasons = Vec::new();

    let video_problem = video_problem(video, profile);
    let tag_problem = if video_problem.is_none() && matches!(container.as_str(), "mp4" | "mov") {
        tag_problem(video, profile)
    } else {
        None
    };
    let audio_problem = audio.and_then(|a| audio_problem(a, profile));
    let container_ok = profile.containers.contains(&container);

    let mut subtitles = Vec::new();
    let mut burn_in = false;
    for s in &info.subtitles {
        let delivery = if profile.subtitles.contains(&s.codec) {
            "native"
        } else if TEXT_SUBTITLES.contains(&s.codec.as_str()) {
            "webvtt"
        } else {
            "burn_in"
        };
        if opts.subtitle_stream == Some(s.index) && delivery == "burn_in" {
            burn_in = true;
            reasons.push(format!(
                "subtitle {} (track {}) is a bitmap {who} cannot show; it must be burned in",
                s.codec, s.index
            ));
        }
        subtitles.push(SubtitlePlan {
            index: s.index,
            codec: s.codec.clone(),
            language: s.language.clone(),
            default: s.default,
            forced: s.forced,
            delivery,
        });
    }

    if let Some(p) = &video_problem {
        reasons.push(p.clone());
    }
    if let Some(p) = &tag_problem {
        reasons.push(p.clone());
    }
    if let Some(p) = &audio_problem {
        reasons.push(p.clone());
    }
    if !container_ok {
        reasons.push(format!(
            "container {} not supported by {who}",
            container.to_uppercase()
        ));
    }

    let remux_possible = MP4_VIDEO.contains(&video.codec.as_str())
        && audio.is_none_or(|a| MP4_AUDIO.contains(&a.codec.as_str()) || audio_problem.is_some())
        && profile.containers.iter().any(|c| c == "mp4");
    let kind = if video_problem.is_some() || burn_in {
        DecisionKind::Transcode
    } else if !remux_possible && (!container_ok || tag_problem.is_some()) {
        reasons.push(format!(
            "{} cannot be put into MP4 for {who}",
            display_codec(&video.codec)
        ));
        DecisionKind::Transcode
    } else if audio_problem.is_some() {
        DecisionKind::TranscodeAudio
    } else if !container_ok || tag_problem.is_some() {
        DecisionKind::Remux
    } else {
        DecisionKind::DirectPlay
    };

    let video_out = match kind {
        DecisionKind::Transcode => VideoOut::Encode(video_encode(video, profile, opts)),
        _ => VideoOut::Copy {
            tag: (video.codec == "hevc").then(|| "hvc1".to_string()),
        },
    };
    let audio_out = match (kind, audio) {
        (_, None) => AudioOut::Copy,
        (DecisionKind::Transcode, Some(a))
            if audio_problem.is_none() && MP4_AUDIO.contains(&a.codec.as_str()) =>
        {
            AudioOut::Copy
        }
        (DecisionKind::Transcode | DecisionKind::TranscodeAudio, Some(a)) => {
            audio_encode(a, profile)
        }
        _ => AudioOut::Copy,
    };
    Ok(Decision {
        decision: kind,
        profile: profile.name.clone(),
        reasons,
        target_container: if kind == DecisionKind::DirectPlay {
            container.clone()
        } else {
            "mp4".into()
        },
        source_container: container,
        video_stream: video.index,
        audio_stream: audio.map(|a| a.index),
        video: video_out,
        audio: audio_out,
        subtitles,
        height: video.height,
        duration_secs: info.duration_secs,
    })
}

/// Checks the end of a probed file: a download cut short still probes
/// (MKV headers say 10 s) but its packets stop early.
pub fn check_complete(info: &MediaInfo, last_packet_secs: Option<f64>) -> Result<(), PlanError> {
    let Some(duration) = info.duration_secs else {
        return Ok(());
    };
    let last = last_packet_secs.unwrap_or(0.0);
    // Packets stop at most a GOP or so before the end.
    let slack = (duration * 0.1).max(2.0);
    if last + slack < duration {
        return Err(PlanError::Truncated { last, duration });
    }
    Ok(())
}

fn video_problem(v: &VideoStream, p: &Profile) -> Option<String> {
    let who = &p.display;
    let name = display_codec(&v.codec);
    let Some(rule) = p.video_rule(&v.codec) else {
        return Some(format!("video {name} not supported by {who}"));
    };
    let depth = v.bit_depth.unwrap_or(8);
    if depth > rule.max_bit_depth {
        return Some(format!(
            "video {name} {} ({depth}-bit) not supported by {who}",
            v.profile.as_deref().unwrap_or("")
        ));
    }
    if !rule.profiles.is_empty() {
        let prof = v.profile.as_deref().unwrap_or("unknown");
        if !rule.profiles.iter().any(|r| r == prof) {
            return Some(format!(
                "video {name} profile {prof} not supported by {who}"
            ));
        }
    }
    if let (Some(max), Some(level)) = (rule.max_level, v.level)
        && level > max
    {
        return Some(format!(
            "video {name} level {} above {who}'s {}",
            level_str(&v.codec, level),
            level_str(&v.codec, max)
        ));
    }
    None
}

fn level_str(codec: &str, level: i64) -> String {
    let l = if codec == "hevc" { level / 3 } else { level };
    format!("{}.{}", l / 10, l % 10)
}

fn tag_problem(v: &VideoStream, p: &Profile) -> Option<String> {
    let rule = p.video_rule(&v.codec)?;
    let tag = v.codec_tag.as_deref()?;
    if rule.tags.is_empty() || rule.tags.iter().any(|t| t == tag) {
        return None;
    }
    Some(format!(
        "{} is tagged {tag}; {} plays only {} (a remux retags it)",
        display_codec(&v.codec),
        p.display,
        rule.tags.join("/")
    ))
}

fn audio_problem(a: &AudioStream, p: &Profile) -> Option<String> {
    let who = &p.display;
    let name = display_codec(&a.codec);
    let Some(rule) = p.audio_rule(&a.codec) else {
        return Some(format!("audio {name} not supported by {who}"));
    };
    if a.channels > rule.max_channels {
        return Some(format!(
            "audio {name} with {} channels not supported by {who} (at most {})",
            a.channels, rule.max_channels
        ));
    }
    None
}

/// Video bit rate for a transcode to `height` lines.
fn video_kbps(height: u32) -> u32 {
    match height {
        0..=240 => 500,
        241..=400 => 1000,
        401..=576 => 1800,
        577..=720 => 3000,
        721..=1080 => 6000,
        _ => 16000,
    }
}

fn video_encode(v: &VideoStream, p: &Profile, opts: &Options) -> VideoEncode {
    let out_h = v.height.min(p.transcode.max_height);
    VideoEncode {
        codec: p.transcode.video,
        max_height: Some(p.transcode.max_height),
        source_height: v.height,
        bitrate_kbps: video_kbps(out_h),
        keyframe_secs: None,
        hw: opts.hw.clone(),
    }
}

fn audio_encode(a: &AudioStream, p: &Profile) -> AudioOut {
    match p.transcode.surround {
        Some(codec) if a.channels > 2 && p.audio_rule(codec.name()).is_some() => AudioOut::Encode {
            codec,
            channels: a.channels.min(6),
            bitrate_kbps: 448,
        },
        _ => AudioOut::Encode {
            codec: p.transcode.audio,
            channels: 2,
            bitrate_kbps: 160,
        },
    }
}

impl Decision {
    /// The ffmpeg job that makes a file playable on the profile, writing
    /// `output`; `None` for direct play.
    pub fn job(&self, input: Input, output: Output) -> Option<Job> {
        if self.decision == DecisionKind::DirectPlay {
            return None;
        }
        Some(Job {
            input,
            start_secs: None,
            video_stream: self.video_stream,
            audio_stream: self.audio_stream,
            video: self.video.clone(),
            audio: self.audio.clone(),
            output,
        })
    }

    /// The codec of the video that is played.
    pub fn output_video_codec(&self, source: &VideoStream) -> String {
        match &self.video {
            VideoOut::Copy { .. } => source.codec.clone(),
            VideoOut::Encode(e) => match e.codec {
                VideoCodec::H264 => "h264".into(),
                VideoCodec::Hevc => "hevc".into(),
            },
        }
    }

    pub fn output_audio_codec(&self, source: Option<&AudioStream>) -> Option<String> {
        let src = source?;
        Some(match &self.audio {
            AudioOut::Copy => src.codec.clone(),
            AudioOut::Encode { codec, .. } => match codec {
                AudioCodec::Aac => "aac",
                AudioCodec::Ac3 => "ac3",
                AudioCodec::Eac3 => "eac3",
            }
            .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::builtin;

    fn info(container: &str, v: (&str, &str, u8, Option<&str>), a: &[(&str, u32)]) -> MediaInfo {
        MediaInfo {
            format_name: container.into(),
            duration_secs: Some(10.0),
            video: vec![VideoStream {
                index: 0,
                codec: v.0.into(),
                profile: Some(v.1.into()),
                level: Some(40),
                width: 1920,
                height: 1080,
                bit_depth: Some(v.2),
                codec_tag: v.3.map(String::from),
                ..Default::default()
            }],
            audio: a
                .iter()
                .enumerate()
                .map(|(i, (c, n))| AudioStream {
                    index: i as u32 + 1,
                    codec: c.to_string(),
                    channels: *n,
                    default: i == 0,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn dts_on_safari_is_an_audio_transcode_with_a_reason() {
        let i = info("matroska,webm", ("hevc", "Main", 8, None), &[("dts", 6)]);
        let d = decide(
            &i,
            Path::new("a.mkv"),
            &builtin("safari").unwrap(),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(d.decision, DecisionKind::TranscodeAudio);
        assert!(
            d.reasons
                .contains(&"audio DTS not supported by Safari".to_string()),
            "{:?}",
            d.reasons
        );
        assert!(
            d.reasons
                .contains(&"container MKV not supported by Safari".to_string())
        );
        assert_eq!(
            d.video,
            VideoOut::Copy {
                tag: Some("hvc1".into())
            }
        );
        // Apple TV keeps the 5.1 as AC-3; Safari gets stereo AAC.
        assert!(matches!(
            d.audio,
            AudioOut::Encode {
                codec: AudioCodec::Aac,
                channels: 2,
                ..
            }
        ));
        let d = decide(
            &i,
            Path::new("a.mkv"),
            &builtin("apple-tv").unwrap(),
            &Options::default(),
        )
        .unwrap();
        assert!(matches!(
            d.audio,
            AudioOut::Encode {
                codec: AudioCodec::Ac3,
                channels: 6,
                ..
            }
        ));
    }

    #[test]
    fn hev1_needs_a_retag_only() {
        let i = info(
            "mov,mp4,m4a,3gp,3g2,mj2",
            ("hevc", "Main 10", 10, Some("hev1")),
            &[("ac3", 6)],
        );
        let d = decide(
            &i,
            Path::new("a.mp4"),
            &builtin("apple-tv").unwrap(),
            &Options::default(),
        )
        .unwrap();
        assert_eq!(d.decision, DecisionKind::Remux);
        assert!(d.reasons[0].contains("hev1"), "{:?}", d.reasons);
    }

    #[test]
    fn truncation() {
        let i = info("matroska,webm", ("h264", "High", 8, None), &[]);
        assert!(check_complete(&i, Some(9.9)).is_ok());
        assert_eq!(
            check_complete(&i, Some(5.0)),
            Err(PlanError::Truncated {
                last: 5.0,
                duration: 10.0
            })
        );
    }

    #[test]
    fn bitmap_subtitles_chosen_need_burn_in() {
        let mut i = info("matroska,webm", ("h264", "High", 8, None), &[("aac", 2)]);
        i.subtitles.push(ffmpeg::SubtitleStream {
            index: 2,
            codec: "hdmv_pgs_subtitle".into(),
            ..Default::default()
        });
        let p = builtin("android-tv").unwrap();
        let d = decide(&i, Path::new("a.mkv"), &p, &Options::default()).unwrap();
        assert_eq!(d.decision, DecisionKind::DirectPlay);
        assert_eq!(d.subtitles[0].delivery, "burn_in");
        let opts = Options {
            subtitle_stream: Some(2),
            ..Default::default()
        };
        assert_eq!(
            decide(&i, Path::new("a.mkv"), &p, &opts).unwrap().decision,
            DecisionKind::Transcode
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    // `error`, not `source`: the message already says it all, and error
    // chains would print it twice.
    #[error("cannot read {path}: {error}")]
    Probe {
        path: std::path::PathBuf,
        error: ffmpeg::ProbeError,
    },
    #[error("{path}: {error}")]
    Plan {
        path: std::path::PathBuf,
        error: PlanError,
    },
}

/// Probes `path` (including a look at its end, to catch truncated
/// downloads) and decides how it plays on `profile`.
pub async fn plan_file(
    path: &Path,
    profile: &Profile,
    opts: &Options,
) -> Result<(MediaInfo, Decision), PlanFileError> {
    let info = ffmpeg::probe(path)
        .await
        .map_err(|error| PlanFileError::Probe {
            path: path.to_path_buf(),
            error,
        })?;
    if let Some(d) = info.duration_secs {
        let last = ffmpeg::last_packet_secs(&Input::File(path.to_path_buf()), (d - 3.0).max(0.0))
            .await
            .ok()
            .flatten();
        check_complete(&info, last).map_err(|error| PlanFileError::Plan {
            path: path.to_path_buf(),
            error,
        })?;
    }
    let d = decide(&info, path, profile, opts).map_err(|error| PlanFileError::Plan {
        path: path.to_path_buf(),
        error,
    })?;
    Ok((info, d))
}
