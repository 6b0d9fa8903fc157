//! One module per subcommand.

pub mod client;
pub mod download;
pub mod info;
pub mod library;
pub mod playback;
pub mod serve;
pub mod source;
pub mod stream;
