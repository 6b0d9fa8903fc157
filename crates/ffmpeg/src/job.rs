//! What one ffmpeg run does, as data, and its argument vector.
//!
//! A [`Job`] is built by the playback planner (which decides *what* to do)
//! and turned into arguments here (which knows *how* ffmpeg spells it).
//! Arguments are a `Vec<String>` handed to `exec` directly: no shell ever
//! sees them, and every path is a `file:` URL (see [`crate::input_arg`]).

use crate::hwaccel::HwAccel;
use crate::input::{Input, InputError, output_arg};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Video codecs we can encode to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoCodec {
    H264,
    Hevc,
}

/// Audio codecs we can encode to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioCodec {
    Aac,
    Ac3,
    Eac3,
}

impl AudioCodec {
    /// ffprobe's codec name of the result.
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Ac3 => "ac3",
            AudioCodec::Eac3 => "eac3",
        }
    }
}

impl VideoCodec {
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Hevc => "hevc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoEncode {
    pub codec: VideoCodec,
    /// Scale down (never up) to at most this height, keeping the aspect.
    pub max_height: Option<u32>,
    /// The source height, to decide whether scaling is needed at all.
    pub source_height: u32,
    pub bitrate_kbps: u32,
    /// Force a keyframe at every multiple of this many seconds, so HLS
    /// segments start exactly where the playlist says.
    pub keyframe_secs: Option<f64>,
    pub hw: HwAccel,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum VideoOut {
    /// Copy the stream; `tag` rewrites the sample entry (HEVC `hvc1`).
    Copy {
        tag: Option<String>,
    },
    Encode(VideoEncode),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum AudioOut {
    Copy,
    Encode {
        codec: AudioCodec,
        channels: u32,
        bitrate_kbps: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Output {
    /// A complete MP4 with `moov` first, playable by every MP4 player.
    Mp4 { path: PathBuf },
    /// fMP4 HLS: `init.mp4`, `seg{N}.m4s` and ffmpeg's own `ffmpeg.m3u8`
    /// in `dir`.
    Hls {
        dir: PathBuf,
        segment_secs: f64,
        start_number: u32,
        /// `EVENT` (grows while written) instead of `VOD`.
        event: bool,
    },
    /// Decode and discard (benchmarks, checks).
    Null,
}

/// The file names ffmpeg writes for [`Output::Hls`].
pub const HLS_INIT: &str = "init.mp4";
pub const HLS_PLAYLIST: &str = "ffmpeg.m3u8";

/// `seg{n}.m4s`.
pub fn hls_segment_name(n: u32) -> String {
    format!("seg{n}.m4s")
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub input: Input,
    /// Start reading here (accurate seek: output starts at this time).
    pub start_secs: Option<f64>,
    /// Absolute stream indexes (ffprobe's `index`).
    pub video_stream: u32,
    pub audio_stream: Option<u32>,
    pub video: VideoOut,
    pub audio: AudioOut,
    pub output: Output,
}

impl Job {
    /// The argument vector (without the program name). `threads` caps the
    /// encoder's threads (the worker pool passes its slot's core count).
    pub fn args(&self, threads: Option<usize>) -> Result<Vec<String>, InputError> {
        let mut a: Vec<String> = Vec::with_capacity(64);
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&["-nostdin", "-hide_banner", "-loglevel", "error", "-nostats"]);
        push(&["-progress", "pipe:1", "-y"]);
        if let VideoOut::Encode(e) = &self.video {
            a.extend(e.hw.global_args());
        }
        if self.input.is_url() {
            // A torrent stream stalls while pieces arrive; give up only
            // after minutes of silence (microseconds).
            a.extend(["-rw_timeout".into(), "600000000".into()]);
        }
        a.extend([
            "-protocol_whitelist".into(),
            self.input.protocol_whitelist().into(),
        ]);
        if let Some(s) = self.start_secs.filter(|s| *s > 0.0) {
            a.extend(["-ss".into(), format!("{s:.3}")]);
        }
        a.extend(["-i".into(), self.input.arg()?]);
        a.extend(["-map".into(), format!("0:{}", self.video_stream)]);
        if let Some(i) = self.audio_stream {
            a.extend(["-map".into(), format!("0:{i}")]);
        }
        a.extend(["-map_metadata", "-1", "-map_chapters", "-1", "-sn", "-dn"].map(String::from));
        match &self.video {
            VideoOut::Copy { tag } => {
                a.extend(["-c:v".into(), "copy".into()]);
                if let Some(t) = tag {
                    a.extend(["-tag:v".into(), t.clone()]);
                }
            }
            VideoOut::Encode(e) => a.extend(video_encode_args(e, threads)),
        }
        if self.audio_stream.is_some() {
            match &self.audio {
                AudioOut::Copy => {
                    a.extend(["-c:a".into(), "copy".into()]);
                    if self.start_secs.is_some_and(|s| s > 0.0) {
                        // With -copyts ffmpeg keeps copied packets from
                        // the keyframe the input seek landed on (up to a
                        // GOP before the start); drop them, or a
                        // restarted segment starts its audio seconds early.
                        a.extend(["-copypriorss:a".into(), "0".into()]);
                    }
                }
                AudioOut::Encode {
                    codec,
                    channels,
                    bitrate_kbps,
                } => {
                    let enc = match codec {
                        AudioCodec::Aac => "aac",
                        AudioCodec::Ac3 => "ac3",
                        AudioCodec::Eac3 => "eac3",
                    };
                    if matches!(self.output, Output::Hls { .. })
                        && self.start_secs.is_none_or(|s| s <= 0.0)
                    {
                        // The encoder's priming (AAC 1024 samples, AC-3
                        // 256) puts the first packet before zero when the
                        // audio starts there; with `frag_discont` (below)
                        // that would become a negative, wrapped `tfdt`.
                        // Dropping the first 1024 samples (23 ms at 44.1
                        // kHz) keeps every timestamp at or above zero.
                        a.extend(["-af".into(), "atrim=start_sample=1024".into()]);
                    }
                    a.extend([
                        "-c:a".into(),
                        enc.into(),
                        "-ac".into(),
                        channels.to_string(),
                        "-b:a".into(),
                        format!("{bitrate_kbps}k"),
                    ]);
                }
            }
        }
        if let Some(t) = threads {
            a.extend(["-threads".into(), t.to_string()]);
        }
        // Timestamps stay those of the source (from zero), so a restart at
        // segment N produces the same times as an uninterrupted run would.
        a.extend(
            [
                "-copyts",
                "-start_at_zero",
                "-avoid_negative_ts",
                "disabled",
                "-max_muxing_queue_size",
                "2048",
            ]
            .map(String::from),
        );
        match &self.output {
            Output::Mp4 { path } => {
                a.extend(["-f", "mp4", "-movflags", "+faststart"].map(String::from));
                a.push(output_arg(path)?);
            }
            Output::Hls {
                dir,
                segment_secs,
                start_number,
                event,
            } => {
                let seg_pattern = format!("{}/seg%d.m4s", escape_percent(&output_arg(dir)?));
                a.extend([
                    "-f".into(),
                    "hls".into(),
                    "-hls_time".into(),
                    format!("{segment_secs}"),
                    "-hls_segment_type".into(),
                    "fmp4".into(),
                    "-hls_fmp4_init_filename".into(),
                    HLS_INIT.into(),
                    "-hls_segment_filename".into(),
                    seg_pattern,
                    "-hls_playlist_type".into(),
                    if *event { "event" } else { "vod" }.into(),
                    "-hls_list_size".into(),
                    "0".into(),
                    // Segments and playlist appear under their names only
                    // when complete.
                    "-hls_flags".into(),
                    "temp_file".into(),
                    // Each fragment's `tfdt` is its packets' own time,
                    // not time since this run began: without it a run
                    // restarted at segment N (after a seek) writes
                    // segments from 0 and players put them at the start.
                    "-hls_segment_options".into(),
                    "movflags=+frag_discont".into(),
                    "-start_number".into(),
                    start_number.to_string(),
                ]);
                a.push(output_arg(&dir.join(HLS_PLAYLIST))?);
            }
            Output::Null => a.extend(["-f", "null", "-"].map(String::from)),
        }
        Ok(a)
    }
}

/// The segment file name is a pattern (`%d`); a `%` in the folder's own
/// name must not be read as one.
fn escape_percent(s: &str) -> String {
    s.replace('%', "%%")
}

fn video_encode_args(e: &VideoEncode, threads: Option<usize>) -> Vec<String> {
    let mut a = Vec::new();
    let target_h = e
        .max_height
        .filter(|m| *m < e.source_height)
        .map(|h| h & !1);
    let mut filters: Vec<String> = Vec::new();
    match &e.hw {
        HwAccel::Vaapi { .. } => {
            filters.push("format=nv12".into());
            filters.push("hwupload".into());
            if let Some(h) = target_h {
                filters.push(format!("scale_vaapi=w=-2:h={h}"));
            }
        }
        HwAccel::Qsv => {
            if let Some(h) = target_h {
                filters.push(format!("scale=-2:{h}"));
            }
            filters.push("format=nv12".into());
            filters.push("hwupload=extra_hw_frames=64".into());
        }
        HwAccel::None | HwAccel::Nvenc => {
            if let Some(h) = target_h {
                filters.push(format!("scale=-2:{h}"));
            }
            // 8-bit 4:2:0: the one format every H.264 decoder takes.
            filters.push("format=yuv420p".into());
        }
    }
    a.extend(["-vf".into(), filters.join(",")]);
    let encoder = e.hw.encoder(e.codec);
    a.extend(["-c:v".into(), encoder.into()]);
    match (&e.hw, e.codec) {
        (HwAccel::None, VideoCodec::H264) => {
            a.extend(
                [
                    "-preset",
                    "veryfast",
                    "-profile:v",
                    "high",
                    "-level:v",
                    "4.1",
                ]
                .map(String::from),
            );
        }
        (HwAccel::None, VideoCodec::Hevc) => {
            let mut params = String::from("log-level=error");
            if e.keyframe_secs.is_some() {
                params.push_str(":scenecut=0:open-gop=0");
            }
            if let Some(t) = threads {
                // x265 sizes its own pools; keep it inside the slot.
                params.push_str(&format!(":pools={t}:frame-threads={t}"));
            }
            a.extend([
                "-preset".into(),
                "veryfast".into(),
                "-x265-params".into(),
                params,
            ]);
        }
        (HwAccel::Nvenc, _) => a.extend(["-preset", "p4"].map(String::from)),
        (HwAccel::Vaapi { .. } | HwAccel::Qsv, _) => {}
    }
    if e.codec == VideoCodec::Hevc {
        a.extend(["-tag:v".into(), "hvc1".into()]);
    }
    let b = e.bitrate_kbps;
    a.extend([
        "-b:v".into(),
        format!("{b}k"),
        "-maxrate".into(),
        format!("{b}k"),
        "-bufsize".into(),
        format!("{}k", b * 2),
    ]);
    if let Some(k) = e.keyframe_secs {
        // Keyframes only at the forced boundaries: no periodic or
        // scene-cut ones, so the HLS muxer can cut at every keyframe.
        a.extend([
            "-force_key_frames".into(),
            format!("expr:gte(t,n_forced*{k})"),
            "-g".into(),
            "100000".into(),
            "-sc_threshold".into(),
            "0".into(),
        ]);
        if e.hw == HwAccel::Nvenc {
            a.extend(["-forced-idr".into(), "1".into()]);
        }
    }
    a
}

/// Arguments that convert one text subtitle stream to a WebVTT file.
pub fn webvtt_args(input: &Input, stream: u32, out: &Path) -> Result<Vec<String>, InputError> {
    let mut a: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-nostats"]
        .map(String::from)
        .to_vec();
    a.extend(["-progress".into(), "pipe:1".into(), "-y".into()]);
    a.extend([
        "-protocol_whitelist".into(),
        input.protocol_whitelist().into(),
    ]);
    a.extend(["-i".into(), input.arg()?]);
    a.extend([
        "-map".into(),
        format!("0:{stream}"),
        "-c:s".into(),
        "webvtt".into(),
        "-f".into(),
        "webvtt".into(),
    ]);
    a.push(output_arg(out)?);
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(output: Output) -> Job {
        Job {
            input: Input::File("/m/-i x;|.mkv".into()),
            start_secs: Some(6.006),
            video_stream: 0,
            audio_stream: Some(1),
            video: VideoOut::Encode(VideoEncode {
                codec: VideoCodec::H264,
                max_height: Some(720),
                source_height: 1080,
                bitrate_kbps: 3000,
                keyframe_secs: Some(3.0),
                hw: HwAccel::None,
            }),
            audio: AudioOut::Encode {
                codec: AudioCodec::Aac,
                channels: 2,
                bitrate_kbps: 160,
            },
            output,
        }
    }

    #[test]
    fn hls_args() {
        let a = job(Output::Hls {
            dir: "/tmp/100%/s".into(),
            segment_secs: 3.0,
            start_number: 2,
            event: false,
        })
        .args(Some(1))
        .unwrap();
        let s = a.join(" ");
        assert!(s.contains("-ss 6.006 -i file:/m/-i x;|.mkv"), "{s}");
        assert!(
            s.contains("-vf scale=-2:720,format=yuv420p -c:v libx264"),
            "{s}"
        );
        assert!(
            s.contains("-force_key_frames expr:gte(t,n_forced*3)"),
            "{s}"
        );
        assert!(
            s.contains("-hls_segment_filename file:/tmp/100%%/s/seg%d.m4s"),
            "{s}"
        );
        assert!(s.contains("-start_number 2"), "{s}");
        assert!(
            s.contains("-hls_segment_options movflags=+frag_discont"),
            "{s}"
        );
        assert!(s.contains("-threads 1"), "{s}");
        assert_eq!(a.last().unwrap(), "file:/tmp/100%/s/ffmpeg.m3u8");
        assert_eq!(a.iter().filter(|x| *x == "-i").count(), 1);
        // A restarted run (start 6 s) keeps its audio from the seek point.
        assert!(!s.contains("atrim"), "{s}");
        let mut j = job(Output::Hls {
            dir: "/tmp/s".into(),
            segment_secs: 3.0,
            start_number: 2,
            event: false,
        });
        j.audio = AudioOut::Copy;
        let s = j.args(None).unwrap().join(" ");
        assert!(s.contains("-c:a copy -copypriorss:a 0"), "{s}");
        let mut j = job(Output::Hls {
            dir: "/tmp/s".into(),
            segment_secs: 3.0,
            start_number: 0,
            event: false,
        });
        j.start_secs = None;
        let s = j.args(None).unwrap().join(" ");
        assert!(s.contains("-af atrim=start_sample=1024 -c:a aac"), "{s}");
    }

    #[test]
    fn remux_keeps_streams_and_tags_hvc1() {
        let mut j = job(Output::Mp4 {
            path: "/out/-y.mp4".into(),
        });
        j.start_secs = None;
        j.video = VideoOut::Copy {
            tag: Some("hvc1".into()),
        };
        j.audio = AudioOut::Copy;
        let a = j.args(None).unwrap();
        let s = a.join(" ");
        assert!(s.contains("-c:v copy -tag:v hvc1 -c:a copy"), "{s}");
        assert!(!s.contains("-ss"));
        assert_eq!(a.last().unwrap(), "file:/out/-y.mp4");
    }

    #[test]
    fn hardware_encoders() {
        for (hw, enc, global) in [
            (
                HwAccel::Vaapi {
                    device: "/dev/dri/renderD128".into(),
                },
                "h264_vaapi",
                "-vaapi_device",
            ),
            (HwAccel::Qsv, "h264_qsv", "-init_hw_device"),
            (HwAccel::Nvenc, "h264_nvenc", ""),
        ] {
            let mut j = job(Output::Null);
            if let VideoOut::Encode(e) = &mut j.video {
                e.hw = hw.clone();
            }
            let s = j.args(None).unwrap().join(" ");
            assert!(s.contains(&format!("-c:v {enc}")), "{s}");
            assert!(s.contains(global), "{s}");
            assert!(
                s.find(global).unwrap() < s.find(" -i ").unwrap(),
                "device before input: {s}"
            );
        }
    }
}
