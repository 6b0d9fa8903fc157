//! The BitTorrent engine: a session of torrents, their peer connections,
//! piece picking, choking, trackers, and verified storage through
//! `piece-store`.
//!
//! Data flow: trackers and the user supply addresses → the torrent's
//! control task opens connections → each connection task parses messages
//! and, under the torrent lock, updates the [`picker`] and copies blocks
//! into piece buffers → complete pieces are hashed and written on the
//! blocking pool → HAVEs go out and waiters (CLI, streams) are woken.

mod candidates;
pub mod choker;
pub mod config;
mod dht;
mod error;
mod local_discovery;
mod peer;
mod peer_exchange;
pub mod picker;
pub mod rate;
mod session;
pub mod stats;
mod stream;
mod torrent;
mod tracker;
pub mod transport;
mod web_seed;

pub use config::SessionConfig;
pub use error::EngineError;
pub use session::{AddTorrent, Session, TorrentHandle, TorrentSource};
pub use stats::{PeerInfo, SessionStats, TorrentStats, TorrentStatus};
pub use stream::{FileInfo, FileStream, StreamStats};
pub use torrent::Progress;
pub use transport::{Acceptor, Connection, Tcp, Transport};
