//! MockEnvironment: a simulated swarm that drives the real engine.
//!
//! The design brief's `MockEnvironment { tracker, network }`: an in-process
//! [`MockTracker`], a [`SimNet`] with per-peer latency, bandwidth and
//! retransmission delays, scripted seeders (choking, leaving), and a
//! [`player`] model. The engine under test is a real `bt_engine::Session`
//! whose connections go through the simulated network, on tokio's paused
//! clock: a minute of streaming runs in a moment, and a run is reproducible
//! from its seed (single-threaded runtime, seeded engine randomness, disk
//! work done in place).

pub mod net;
pub mod player;
pub mod seeder;
pub mod tracker;

use bt_engine::{AddTorrent, Session, SessionConfig, TorrentHandle, TorrentSource};
use bt_proto::metainfo::{Metainfo, TorrentBuilder, piece_hashes};
use net::{NodeSpec, SimNet};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seeder::{Behaviour, Content};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
pub use tracker::MockTracker;

/// Log timestamps on the simulated clock (milliseconds since the first
/// event), for `tracing_subscriber::fmt().with_timer(SimClock::default())`.
#[derive(Debug)]
pub struct SimClock(tokio::time::Instant);

impl Default for SimClock {
    fn default() -> Self {
        SimClock(tokio::time::Instant::now())
    }
}

impl tracing_subscriber::fmt::time::FormatTime for SimClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:>9.3}s", self.0.elapsed().as_secs_f64())
    }
}

/// Address of the engine under test.
pub const ENGINE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

pub struct MockEnvironment {
    pub net: SimNet,
    pub tracker: MockTracker,
    pub content: Arc<Content>,
    pub metainfo: Metainfo,
    seeders: Vec<(SocketAddr, NodeSpec)>,
    seed: u64,
    dir: tempfile::TempDir,
}

impl MockEnvironment {
    /// A swarm for one file of `size` random bytes.
    pub fn new(seed: u64, size: usize, piece_length: u32) -> MockEnvironment {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = vec![0u8; size];
        rng.fill(&mut data[..]);
        let bytes = TorrentBuilder::new("film.mkv", piece_length)
            .file(Vec::new(), size as u64)
            .pieces(piece_hashes(&data, piece_length))
            .build();
        let metainfo = Metainfo::from_bytes(&bytes).expect("valid torrent");
        let net = SimNet::new(seed);
        net.add_node(IpAddr::V4(ENGINE_IP), NodeSpec::ideal());
        MockEnvironment {
            net,
            tracker: MockTracker::default(),
            content: Arc::new(Content {
                info_hash: metainfo.info_hash,
                data: Arc::new(data),
                piece_length,
            }),
            metainfo,
            seeders: Vec::new(),
            seed,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Adds a seeder with the given link and behaviour; it registers with
    /// the tracker.
    pub fn add_seeder(&mut self, spec: NodeSpec, behaviour: Behaviour) -> SocketAddr {
        let n = self.seeders.len() as u32 + 1;
        let ip = Ipv4Addr::new(10, 0, (n >> 8) as u8 + 1, n as u8);
        let addr = SocketAddr::new(IpAddr::V4(ip), 6881);
        self.net.add_node(addr.ip(), spec);
        seeder::spawn(&self.net, addr, self.content.clone(), behaviour, n as u8);
        self.tracker.register(addr);
        self.seeders.push((addr, spec));
        addr
    }

    /// Starts the engine under test on the simulated network and adds the
    /// torrent; the tracker announces every 30 s.
    pub async fn start_engine(&self) -> (Session, TorrentHandle) {
        let config = SessionConfig {
            bind_ip: IpAddr::V4(ENGINE_IP),
            listen_port: 6881,
            rng_seed: Some(self.seed),
            inline_disk: true,
            ..SessionConfig::default()
        };
        let session = Session::start_with(config, Arc::new(self.net.clone()))
            .await
            .expect("engine starts");
        let handle = session
            .add_torrent(AddTorrent {
                source: TorrentSource::Metainfo(Box::new(self.metainfo.clone())),
                download_dir: self.dir.path().to_path_buf(),
                peers: Vec::new(),
                paused: false,
            })
            .await
            .expect("torrent added");
        self.tracker.attach(handle.clone(), Duration::from_secs(30));
        (session, handle)
    }

    /// The physical floor, right now, for fetching `bytes` (a piece) from
    /// the swarm. A connected seeder could start sending once the request
    /// reaches it, and its bytes arrive no earlier than what its socket
    /// already holds (and any segment waiting for a retransmission timeout)
    /// plus the latency; it delivers whole 16 KiB blocks at its link rate.
    /// The floor is when the blocks that arrive first, from whichever
    /// seeders, add up to `bytes`.
    pub fn floor(&self, bytes: u64) -> Duration {
        let now = tokio::time::Instant::now();
        let engine = IpAddr::V4(ENGINE_IP);
        let block = 16 * 1024u64;
        let needed = bytes.div_ceil(block) as usize;
        let mut arrivals: Vec<f64> = Vec::new();
        for (addr, spec) in &self.seeders {
            let Some(earliest) = self.net.earliest_arrival(addr.ip(), engine) else {
                continue;
            };
            let start =
                (2.0 * spec.latency.as_secs_f64()).max(earliest.duration_since(now).as_secs_f64());
            let per_block = block as f64 / spec.rate as f64;
            arrivals.extend((1..=needed).map(|k| start + k as f64 * per_block));
        }
        arrivals.sort_by(f64::total_cmp);
        Duration::from_secs_f64(
            arrivals
                .get(needed.saturating_sub(1))
                .copied()
                .unwrap_or(3600.0),
        )
    }

    /// Sum of the seeders' link rates.
    pub fn capacity(&self) -> u64 {
        self.seeders.iter().map(|(_, s)| s.rate).sum()
    }
}
