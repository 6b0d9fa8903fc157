//! Device profiles: what a client can play without help.
//!
//! A [`Profile`] lists containers, video codecs (with H.264/HEVC profiles,
//! levels, bit depth and, for Apple, the required `hvc1` sample entry),
//! audio codecs (with channel counts) and subtitle formats. Built-in
//! profiles cover common clients ([`builtin`], [`names`]); [`detect`] picks
//! one from a User-Agent, and a client can declare what it really supports
//! with [`Capabilities`], which replaces the matching parts of the profile.
//!
//! Codec names are ffprobe's (`h264`, `hevc`, `ac3`, `dts`, …).

use ffmpeg::{AudioCodec, VideoCodec};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoRule {
    pub codec: String,
    /// ffprobe profile names accepted; empty = any.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// ffprobe's `level` (H.264: 41 = 4.1; HEVC: 30 × level, 153 = 5.1).
    #[serde(default)]
    pub max_level: Option<i64>,
    #[serde(default = "eight")]
    pub max_bit_depth: u8,
    /// Sample entries accepted in MP4/MOV (`hvc1`); empty = any. A wrong
    /// tag is fixed by a remux.
    #[serde(default)]
    pub tags: Vec<String>,
}

fn eight() -> u8 {
    8
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioRule {
    pub codec: String,
    pub max_channels: u32,
}

/// What a transcode produces for this client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscodeTarget {
    pub video: VideoCodec,
    pub max_height: u32,
    /// Audio for stereo sources, and for surround when `surround` is none.
    pub audio: AudioCodec,
    /// Codec that keeps 5.1 (AC-3 for TVs and Apple); none = downmix.
    pub surround: Option<AudioCodec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    /// Shown in reasons: "audio DTS not supported by Safari".
    pub display: String,
    pub containers: Vec<String>,
    pub video: Vec<VideoRule>,
    pub audio: Vec<AudioRule>,
    /// Subtitle codecs the client renders itself; others are converted
    /// to WebVTT (text) or need burning in (bitmaps).
    pub subtitles: Vec<String>,
    pub transcode: TranscodeTarget,
}

/// What a client says it can play; every field present replaces the
/// profile's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub containers: Option<Vec<String>>,
    #[serde(default)]
    pub video: Option<Vec<VideoRule>>,
    #[serde(default)]
    pub audio: Option<Vec<AudioRule>>,
    #[serde(default)]
    pub subtitles: Option<Vec<String>>,
    #[serde(default)]
    pub max_height: Option<u32>,
}

impl Profile {
    pub fn with_capabilities(mut self, caps: &Capabilities) -> Profile {
        if let Some(c) = &caps.containers {
            self.containers = c.clone();
        }
        if let Some(v) = &caps.video {
            self.video = v.clone();
        }
        if let Some(a) = &caps.audio {
            self.audio = a.clone();
        }
        if let Some(s) = &caps.subtitles {
            self.subtitles = s.clone();
        }
        if let Some(h) = caps.max_height {
            self.transcode.max_height = h;
        }
        self.name = format!("{}+declared", self.name.trim_end_matches("+declared"));
        self
    }

    pub fn video_rule(&self, codec: &str) -> Option<&VideoRule> {
        self.video.iter().find(|r| r.codec == codec)
    }

    pub fn audio_rule(&self, codec: &str) -> Option<&AudioRule> {
        self.audio.iter().find(|r| r.codec == codec)
    }

    /// What every one of `profiles` plays (a household's devices): the
    /// output made for it plays directly on all of them.
    pub fn intersection(profiles: &[Profile]) -> Option<Profile> {
        let (first, rest) = profiles.split_first()?;
        let mut p = first.clone();
        for o in rest {
            p.containers.retain(|c| o.containers.contains(c));
            p.subtitles.retain(|c| o.subtitles.contains(c));
            p.video = p
                .video
                .iter()
                .filter_map(|r| {
                    let q = o.video_rule(&r.codec)?;
                    Some(VideoRule {
                        codec: r.codec.clone(),
                        profiles: both(&r.profiles, &q.profiles),
                        max_level: match (r.max_level, q.max_level) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        },
                        max_bit_depth: r.max_bit_depth.min(q.max_bit_depth),
                        tags: both(&r.tags, &q.tags),
                    })
                })
                .collect();
            p.audio = p
                .audio
                .iter()
                .filter_map(|r| {
                    let q = o.audio_rule(&r.codec)?;
                    Some(AudioRule {
                        codec: r.codec.clone(),
                        max_channels: r.max_channels.min(q.max_channels),
                    })
                })
                .collect();
            p.transcode.max_height = p.transcode.max_height.min(o.transcode.max_height);
            if p.transcode.video != o.transcode.video {
                p.transcode.video = VideoCodec::H264;
            }
            if p.transcode.surround != o.transcode.surround {
                p.transcode.surround = None;
            }
        }
        p.name = profiles
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join("+");
        p.display = profiles
            .iter()
            .map(|p| p.display.as_str())
            .collect::<Vec<_>>()
            .join(" and ");
        Some(p)
    }
}

/// Both constraint lists at once (empty = unconstrained).
fn both(a: &[String], b: &[String]) -> Vec<String> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => a.iter().filter(|x| b.contains(x)).cloned().collect(),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn v(
    codec: &str,
    profiles: &[&str],
    max_level: Option<i64>,
    depth: u8,
    tags: &[&str],
) -> VideoRule {
    VideoRule {
        codec: codec.into(),
        profiles: s(profiles),
        max_level,
        max_bit_depth: depth,
        tags: s(tags),
    }
}

fn a(list: &[(&str, u32)]) -> Vec<AudioRule> {
    list.iter()
        .map(|(c, n)| AudioRule {
            codec: c.to_string(),
            max_channels: *n,
        })
        .collect()
}

const H264_8BIT: &[&str] = &["Constrained Baseline", "Baseline", "Main", "High"];
const HEVC: &[&str] = &["Main", "Main 10"];

/// Names of the built-in profiles.
pub fn names() -> &'static [&'static str] {
    &[
        "chrome",
        "firefox",
        "safari",
        "apple-tv",
        "android-tv",
        "vlc",
        "infuse",
    ]
}

/// A built-in profile by name.
pub fn builtin(name: &str) -> Option<Profile> {
    let browser_audio = a(&[
        ("aac", 6),
        ("mp3", 2),
        ("opus", 8),
        ("vorbis", 8),
        ("flac", 8),
    ]);
    let stereo_aac = TranscodeTarget {
        video: VideoCodec::H264,
        max_height: 1080,
        audio: AudioCodec::Aac,
        surround: None,
    };
    let p = match name {
        // Desktop/Android Chrome (and Edge, Opera): MSE, so HLS via hls.js.
        // HEVC only with hardware decoders, so not relied upon.
        "chrome" | "firefox" => Profile {
            name: name.into(),
            display: if name == "chrome" {
                "Chrome"
            } else {
                "Firefox"
            }
            .into(),
            containers: s(&["mp4", "webm"]),
            video: vec![
                v("h264", H264_8BIT, Some(52), 8, &[]),
                v("vp8", &[], None, 8, &[]),
                v("vp9", &["Profile 0", "Profile 2"], None, 10, &[]),
                v("av1", &["Main"], None, 10, &[]),
            ],
            audio: browser_audio,
            subtitles: s(&["webvtt"]),
            transcode: stereo_aac,
        },
        // Safari on macOS, iPhone and iPad. Apple plays HEVC only when the
        // MP4 sample entry is `hvc1`, and takes AC-3/E-AC-3 but not DTS,
        // TrueHD, Opus in MP4 or MP3 in anything but MP3/MP4 files.
        "safari" | "apple-tv" => Profile {
            name: name.into(),
            display: if name == "safari" {
                "Safari"
            } else {
                "Apple TV"
            }
            .into(),
            containers: s(&["mp4", "mov"]),
            video: vec![
                v("h264", H264_8BIT, Some(52), 8, &["avc1"]),
                v("hevc", HEVC, Some(153), 10, &["hvc1"]),
            ],
            audio: a(&[("aac", 8), ("ac3", 6), ("eac3", 8), ("alac", 8)]),
            subtitles: s(&["webvtt", "mov_text"]),
            transcode: TranscodeTarget {
                surround: (name == "apple-tv").then_some(AudioCodec::Ac3),
                max_height: if name == "apple-tv" { 2160 } else { 1080 },
                ..stereo_aac
            },
        },
        // Android TV and Google TV (Chromecast with Google TV) through
        // ExoPlayer: MKV is fine, hardware HEVC and VP9; AC-3/E-AC-3 go to
        // the TV or receiver; DTS and TrueHD are not assumed.
        "android-tv" => Profile {
            name: name.into(),
            display: "Android TV".into(),
            containers: s(&["mp4", "mkv", "webm", "mov", "ts"]),
            video: vec![
                v("h264", H264_8BIT, Some(52), 8, &[]),
                v("hevc", HEVC, Some(153), 10, &[]),
                v("vp9", &["Profile 0", "Profile 2"], None, 10, &[]),
                v("av1", &["Main"], None, 10, &[]),
            ],
            audio: a(&[
                ("aac", 8),
                ("ac3", 6),
                ("eac3", 8),
                ("mp3", 2),
                ("opus", 8),
                ("vorbis", 8),
                ("flac", 8),
            ]),
            subtitles: s(&["subrip", "ass", "ssa", "webvtt", "mov_text"]),
            transcode: TranscodeTarget {
                surround: Some(AudioCodec::Ac3),
                max_height: 2160,
                ..stereo_aac
            },
        },
        // VLC and Infuse decode nearly everything in software.
        "vlc" | "infuse" => Profile {
            name: name.into(),
            display: if name == "vlc" { "VLC" } else { "Infuse" }.into(),
            containers: s(&[
                "mp4", "mov", "mkv", "webm", "avi", "ts", "m2ts", "ogg", "flv",
            ]),
            video: [
                "h264",
                "hevc",
                "vp8",
                "vp9",
                "av1",
                "mpeg4",
                "mpeg2video",
                "vc1",
                "msmpeg4v3",
            ]
            .iter()
            .map(|c| v(c, &[], None, 12, &[]))
            .collect(),
            audio: a(&[
                ("aac", 8),
                ("ac3", 8),
                ("eac3", 8),
                ("dts", 8),
                ("truehd", 8),
                ("mp3", 2),
                ("mp2", 2),
                ("opus", 8),
                ("vorbis", 8),
                ("flac", 8),
                ("alac", 8),
                ("pcm_s16le", 8),
                ("pcm_s24le", 8),
            ]),
            subtitles: s(&[
                "subrip",
                "ass",
                "ssa",
                "webvtt",
                "mov_text",
                "hdmv_pgs_subtitle",
                "dvd_subtitle",
                "dvb_subtitle",
            ]),
            transcode: TranscodeTarget {
                surround: Some(AudioCodec::Ac3),
                max_height: 2160,
                ..stereo_aac
            },
        },
        _ => return None,
    };
    Some(p)
}

/// The built-in profile for a User-Agent (Chrome when nothing matches:
/// H.264/AAC in MP4 plays nearly everywhere).
pub fn detect(user_agent: &str) -> &'static str {
    let ua = user_agent;
    let has = |s: &str| ua.contains(s);
    if has("AppleTV") || has("tvOS") {
        return if has("Infuse") { "infuse" } else { "apple-tv" };
    }
    if has("Infuse") {
        return "infuse";
    }
    if has("VLC") || has("LibVLC") {
        return "vlc";
    }
    if has("CrKey")
        || has("GoogleTV")
        || (has("Android") && (has(" TV") || has("AFT") || has("BRAVIA") || has("SHIELD")))
    {
        return "android-tv";
    }
    if has("Firefox/") {
        return "firefox";
    }
    // Chrome's UA also says "Safari/"; iOS browsers are all WebKit.
    if has("iPhone") || has("iPad") || (has("Safari/") && has("Version/") && !has("Chrome/")) {
        return "safari";
    }
    "chrome"
}

/// The profile for a request: a name the client chose, else detection from
/// the User-Agent, then the client's declared capabilities on top.
pub fn resolve(
    name: Option<&str>,
    user_agent: Option<&str>,
    caps: Option<&Capabilities>,
) -> Result<Profile, UnknownProfile> {
    let name = match name {
        Some(n) => n,
        None => detect(user_agent.unwrap_or("")),
    };
    let p = builtin(name).ok_or_else(|| UnknownProfile(name.to_string()))?;
    Ok(match caps {
        Some(c) => p.with_capabilities(c),
        None => p,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("unknown device profile {0:?}; known profiles: {known}", known = names().join(", "))]
pub struct UnknownProfile(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_builtin() {
        for n in names() {
            assert_eq!(builtin(n).unwrap().name, *n);
        }
        assert!(builtin("netscape").is_none());
    }

    #[test]
    fn user_agents() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                "chrome",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "firefox",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
                "safari",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0 Mobile/15E148 Safari/604.1",
                "safari",
            ),
            (
                "AppleCoreMedia/1.0.0.21K69 (Apple TV; U; CPU OS 17_0 like Mac OS X; en_us) AppleTV/17.0",
                "apple-tv",
            ),
            (
                "Mozilla/5.0 (Linux; Android 12; BRAVIA 4K VH2 Build/STT1.211025.001.Z4) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0 Safari/537.36",
                "android-tv",
            ),
            (
                "Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36 CrKey/1.56.500000",
                "android-tv",
            ),
            ("VLC/3.0.20 LibVLC/3.0.20", "vlc"),
            ("Infuse/7.7 (AppleTV; tvOS 17.5)", "infuse"),
            ("curl/8.0", "chrome"),
        ];
        for (ua, want) in cases {
            assert_eq!(detect(ua), want, "{ua}");
        }
    }

    #[test]
    fn declared_capabilities_replace_the_profile() {
        let caps: Capabilities = serde_json::from_str(
            r#"{"audio":[{"codec":"aac","max_channels":2},{"codec":"dts","max_channels":6}],
                "containers":["mp4","mkv"]}"#,
        )
        .unwrap();
        let p = resolve(None, Some("Version/17.5 Safari/605.1.15"), Some(&caps)).unwrap();
        assert_eq!(p.name, "safari+declared");
        assert!(p.audio_rule("dts").is_some());
        assert!(p.audio_rule("ac3").is_none());
        assert!(p.containers.contains(&"mkv".to_string()));
        // Video rules untouched.
        assert!(p.video_rule("hevc").is_some());
        assert!(resolve(Some("netscape"), None, None).is_err());
    }

    #[test]
    fn intersection_is_what_all_play() {
        let p = Profile::intersection(&[builtin("chrome").unwrap(), builtin("safari").unwrap()])
            .unwrap();
        assert_eq!(p.containers, vec!["mp4"]);
        assert_eq!(
            p.video.iter().map(|r| r.codec.as_str()).collect::<Vec<_>>(),
            vec!["h264"]
        );
        assert_eq!(p.video[0].tags, vec!["avc1"]);
        assert_eq!(
            p.audio.iter().map(|r| r.codec.as_str()).collect::<Vec<_>>(),
            vec!["aac"]
        );
        assert_eq!(p.name, "chrome+safari");
    }
}
