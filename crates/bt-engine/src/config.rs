//! Session settings, read once at start and passed down as typed values.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

pub use bt_proto::mse::EncryptionMode;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Address for the peer listener and outgoing connections.
    pub bind_ip: IpAddr,
    /// Peer listen port; 0 picks a free one.
    pub listen_port: u16,
    /// Where resume data and cached metadata live; `None` disables resume.
    pub resume_dir: Option<PathBuf>,
    /// Connections per torrent.
    pub max_peers_per_torrent: usize,
    /// Connections in the whole session.
    pub max_connections: usize,
    /// Outgoing connections that may be connecting at once.
    pub max_half_open: usize,
    /// Regular upload slots per torrent (plus always-unchoked local peers).
    pub upload_slots: usize,
    /// Memory for pieces being assembled, across one torrent.
    pub piece_buffer_budget: usize,
    /// Concurrent disk jobs (hash + write, reads for upload).
    pub disk_jobs: usize,
    /// Our advertised request queue length (BEP 10 `reqq`).
    pub reqq: u32,
    /// Upper bound on our request pipeline to one peer.
    pub max_requests_per_peer: usize,
    /// Seconds of transfer to keep in flight per peer (libtorrent: 3 s).
    pub request_queue_time: Duration,
    /// How often resume data is checkpointed while downloading.
    pub checkpoint_interval: Duration,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Close a connection that sent nothing for this long.
    pub peer_timeout: Duration,
    pub tracker_timeout: Duration,
    /// Always unchoke peers on loopback and private networks.
    pub unchoke_local_peers: bool,
    /// MSE/PE policy for both directions: `Prefer` tries an encrypted
    /// handshake first and falls back to plain; `Require` refuses plain
    /// peers.
    pub encryption: EncryptionMode,
    /// Local service discovery (BEP 14): multicast announces on the LAN.
    /// Off by default: it talks to every host on the local network.
    pub lsd: bool,
    /// The mainline DHT (BEP 5); `None`: off.
    pub dht: Option<DhtConfig>,
    /// Client name sent in the extension handshake.
    pub client_name: String,
    /// A time-critical block this much later than its holder was expected
    /// to deliver it is also asked of another peer.
    pub critical_duplicate_after: Duration,
    /// Seed for every random choice (peer id, piece order, choker), so a
    /// simulated run can be replayed. `None` in production.
    pub rng_seed: Option<u64>,
    /// Do disk work on the calling task instead of the blocking pool. Only
    /// for simulations on a paused clock; it blocks the async thread.
    pub inline_disk: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen_port: 0,
            resume_dir: None,
            max_peers_per_torrent: 100,
            max_connections: 500,
            max_half_open: 32,
            upload_slots: 8,
            piece_buffer_budget: 32 * 1024 * 1024,
            disk_jobs: 4,
            reqq: 2000,
            max_requests_per_peer: 500,
            request_queue_time: Duration::from_secs(3),
            checkpoint_interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(120),
            tracker_timeout: Duration::from_secs(15),
            unchoke_local_peers: true,
            encryption: EncryptionMode::Prefer,
            lsd: false,
            dht: None,
            client_name: concat!("Riptide ", env!("CARGO_PKG_VERSION")).to_string(),
            critical_duplicate_after: Duration::from_millis(600),
            rng_seed: None,
            inline_disk: false,
        }
    }
}

/// Well-known DHT routers, for users who have no node to start from.
pub const DHT_ROUTERS: [&str; 3] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

/// DHT settings.
#[derive(Clone, Debug, Default)]
pub struct DhtConfig {
    /// Nodes to join through, as `HOST:PORT`, besides those remembered in
    /// the resume folder. No default here: the caller names every host the
    /// DHT may contact first (the CLI's default is the well-known routers).
    pub bootstrap: Vec<String>,
    /// UDP port; `None`: the peer listen port.
    pub port: Option<u16>,
}
