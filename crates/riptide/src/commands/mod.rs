//! One module per subcommand.

pub mod download;
pub mod info;
pub mod library;
pub mod playback;
pub mod source;
pub mod stream;
