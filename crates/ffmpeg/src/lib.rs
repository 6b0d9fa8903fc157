//! The only crate that spawns `ffmpeg` and `ffprobe`.
//!
//! Arguments are always built as vectors (never a shell string), and every
//! input and output path is handed over as `file:<absolute path>`, so a
//! file named `-i`, `concat:a|b` or `x;rm -rf ~` is just a file name.
//! Children are killed when their future is dropped, when their
//! cancellation token fires, and when the [`Pool`] shuts down.
//!
//! - [`probe`]: ffprobe → [`MediaInfo`].
//! - [`Job`]: one transcode/remux/HLS run as data → argument vector.
//! - [`process::run`]: run one ffmpeg with progress (`-progress pipe:1`).
//! - [`Pool`]: bounded workers sized to the cores, pinned to CPUs.
//! - [`HwAccel`]: optional VAAPI/QSV/NVENC with detection.

pub mod hwaccel;
mod input;
pub mod job;
pub mod pool;
pub mod probe;
pub mod process;
pub mod progress;

pub use hwaccel::HwAccel;
pub use input::{Input, InputError, input_arg, output_arg};
pub use job::{AudioCodec, AudioOut, Job, Output, VideoCodec, VideoEncode, VideoOut};
pub use pool::{Pool, PoolConfig, PoolStatus, Priority};
pub use probe::{
    AudioStream, MediaInfo, ProbeError, SubtitleStream, VideoStream, last_packet_secs, probe,
    probe_input,
};
pub use process::RunError;
pub use progress::Progress;
