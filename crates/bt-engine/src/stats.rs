//! Figures a user sees: per torrent and for the whole session.

use bt_proto::InfoHash;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TorrentStatus {
    FetchingMetadata,
    Checking,
    Downloading,
    Seeding,
    Paused,
    Error,
}

impl TorrentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TorrentStatus::FetchingMetadata => "fetching metadata",
            TorrentStatus::Checking => "checking",
            TorrentStatus::Downloading => "downloading",
            TorrentStatus::Seeding => "seeding",
            TorrentStatus::Paused => "paused",
            TorrentStatus::Error => "error",
        }
    }
}

#[derive(Clone, Debug)]
pub struct TorrentStats {
    pub info_hash: InfoHash,
    pub name: String,
    pub status: TorrentStatus,
    pub error: Option<String>,
    /// Size of the content; 0 until the metadata is known.
    pub total_bytes: u64,
    /// Bytes in pieces that passed their hash check.
    pub verified_bytes: u64,
    pub num_pieces: u32,
    pub pieces_have: u32,
    pub piece_length: u32,
    /// Payload bytes per second, averaged over a few seconds.
    pub download_rate: u64,
    pub upload_rate: u64,
    /// Payload bytes received and sent in this session.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Received bytes that were thrown away (duplicates, failed pieces).
    pub wasted: u64,
    pub failed_hashes: u32,
    /// New peer addresses learned through PEX (BEP 11).
    pub pex_learned: u64,
    /// PEX messages and entries thrown away (malformed, over the limits,
    /// too frequent, private torrent).
    pub pex_dropped: u64,
    pub peers: usize,
    pub seeds: usize,
    pub known_peers: usize,
    pub banned_peers: usize,
    pub eta: Option<Duration>,
    pub download_dir: PathBuf,
    pub has_trackers: bool,
    /// Some tracker answered at least once.
    pub tracker_ok: bool,
    /// The latest announce failure, if any.
    pub tracker_error: Option<String>,
}

/// One connected peer, as shown in peer lists.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: std::net::SocketAddr,
    /// From the BEP 10 handshake (`v`), when the peer sent one.
    pub client: Option<String>,
    pub incoming: bool,
    /// The connection is RC4-encrypted (MSE).
    pub encrypted: bool,
    pub seed: bool,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub outstanding_requests: usize,
}

impl TorrentStats {
    pub fn progress(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.verified_bytes as f64 / self.total_bytes as f64
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SessionStats {
    pub torrents: usize,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub peers: usize,
    /// Peer addresses found by local service discovery (BEP 14).
    pub lsd_learned: u64,
    /// LSD datagrams and entries thrown away (malformed, over the rate).
    pub lsd_dropped: u64,
    /// Peer addresses found on the DHT (BEP 5).
    pub dht_learned: u64,
}
