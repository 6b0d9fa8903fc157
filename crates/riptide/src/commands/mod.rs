//! One module per subcommand.

pub mod download;
pub mod info;
pub mod playback;
pub mod source;
pub mod stream;
