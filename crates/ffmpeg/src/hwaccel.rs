//! Optional hardware encoders (VAAPI, Quick Sync, NVENC) and detecting
//! which of them really work here.
//!
//! Debian's ffmpeg lists all three encoders whether or not a GPU exists, so
//! detection encodes a few frames with each candidate; only an encoder that
//! succeeds is used. Software (libx264/libx265) is the default and always
//! the fallback.

use crate::job::VideoCodec;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HwAccel {
    #[default]
    None,
    /// Intel/AMD through VA-API; `device` is a DRM render node.
    Vaapi { device: PathBuf },
    /// Intel Quick Sync.
    Qsv,
    /// NVIDIA.
    Nvenc,
}

/// How long one detection encode may take before the encoder is deemed
/// unusable (a wedged driver must not stall startup).
const DETECT_TIMEOUT: Duration = Duration::from_secs(15);

impl HwAccel {
    /// Parses a config value: `none`, `vaapi`, `vaapi:/dev/dri/renderD129`,
    /// `qsv`, `nvenc`.
    pub fn parse(s: &str) -> Option<HwAccel> {
        Some(match s {
            "none" | "software" | "" => HwAccel::None,
            "vaapi" => HwAccel::Vaapi {
                device: "/dev/dri/renderD128".into(),
            },
            "qsv" => HwAccel::Qsv,
            "nvenc" => HwAccel::Nvenc,
            _ => HwAccel::Vaapi {
                device: s.strip_prefix("vaapi:")?.into(),
            },
        })
    }

    /// ffmpeg's encoder name for `codec`.
    pub fn encoder(&self, codec: VideoCodec) -> &'static str {
        match (self, codec) {
            (HwAccel::None, VideoCodec::H264) => "libx264",
            (HwAccel::None, VideoCodec::Hevc) => "libx265",
            (HwAccel::Vaapi { .. }, VideoCodec::H264) => "h264_vaapi",
            (HwAccel::Vaapi { .. }, VideoCodec::Hevc) => "hevc_vaapi",
            (HwAccel::Qsv, VideoCodec::H264) => "h264_qsv",
            (HwAccel::Qsv, VideoCodec::Hevc) => "hevc_qsv",
            (HwAccel::Nvenc, VideoCodec::H264) => "h264_nvenc",
            (HwAccel::Nvenc, VideoCodec::Hevc) => "hevc_nvenc",
        }
    }

    /// Options that must come before the input (device setup).
    pub fn global_args(&self) -> Vec<String> {
        match self {
            HwAccel::Vaapi { device } => vec![
                "-vaapi_device".into(),
                device.to_string_lossy().into_owned(),
            ],
            HwAccel::Qsv => ["-init_hw_device", "qsv=hw", "-filter_hw_device", "hw"]
                .map(String::from)
                .to_vec(),
            HwAccel::None | HwAccel::Nvenc => Vec::new(),
        }
    }

    /// Encodes a few frames of a test pattern with this encoder.
    pub async fn works(&self, codec: VideoCodec) -> bool {
        if let HwAccel::Vaapi { device } = self
            && !device.exists()
        {
            return false;
        }
        let mut args = self.global_args();
        args.extend(
            [
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=256x144:rate=25:duration=0.2",
            ]
            .map(String::from),
        );
        let vf = match self {
            HwAccel::Vaapi { .. } => "format=nv12,hwupload",
            HwAccel::Qsv => "format=nv12,hwupload=extra_hw_frames=64",
            _ => "format=yuv420p",
        };
        args.extend([
            "-vf".into(),
            vf.into(),
            "-c:v".into(),
            self.encoder(codec).into(),
        ]);
        args.extend(["-f", "null", "-"].map(String::from));
        let run = tokio::process::Command::new("ffmpeg")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        matches!(
            tokio::time::timeout(DETECT_TIMEOUT, run).await,
            Ok(Ok(s)) if s.success()
        )
    }
}

/// Chooses the encoder to use: the configured one if it works for H.264,
/// else software, with the reason for falling back.
pub async fn resolve(configured: HwAccel) -> (HwAccel, Option<String>) {
    if configured == HwAccel::None {
        return (HwAccel::None, None);
    }
    if configured.works(VideoCodec::H264).await {
        (configured, None)
    } else {
        let why = format!(
            "hardware encoder {} does not work on this machine (no device or driver); \
             using software encoding. Set the hardware encoder to `none` to silence this.",
            configured.encoder(VideoCodec::H264)
        );
        (HwAccel::None, Some(why))
    }
}

/// Every hardware encoder that works here (for the settings page).
pub async fn detect() -> Vec<HwAccel> {
    let mut found = Vec::new();
    let mut candidates = vec![HwAccel::Nvenc, HwAccel::Qsv];
    if let Ok(dir) = std::fs::read_dir("/dev/dri") {
        let mut nodes: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("renderD"))
            })
            .collect();
        nodes.sort();
        candidates.extend(nodes.into_iter().map(|device| HwAccel::Vaapi { device }));
    }
    for c in candidates {
        if c.works(VideoCodec::H264).await {
            found.push(c);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_config_values() {
        assert_eq!(HwAccel::parse("none"), Some(HwAccel::None));
        assert_eq!(HwAccel::parse("nvenc"), Some(HwAccel::Nvenc));
        assert_eq!(
            HwAccel::parse("vaapi:/dev/dri/renderD129"),
            Some(HwAccel::Vaapi {
                device: "/dev/dri/renderD129".into()
            })
        );
        assert_eq!(HwAccel::parse("cuda"), None);
    }
}
