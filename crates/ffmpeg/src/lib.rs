//! The only crate that spawns `ffmpeg` and `ffprobe`.
//!
//! Arguments are always built as vectors (never a shell string), and every
//! input path is handed over as `file:<absolute path>`, so a file named
//! `-i`, `concat:a|b` or `x;rm -rf ~` is just a file name. Children are
//! killed when their future is dropped.

mod input;
pub mod probe;

pub use input::{InputError, input_arg};
pub use probe::{AudioStream, MediaInfo, ProbeError, SubtitleStream, VideoStream, probe};
