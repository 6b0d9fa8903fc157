//! `riptide download`: fetch one torrent into a folder, show progress, exit
//! once every byte is verified on disk (or keep seeding with `--seed`).

use crate::progress::ProgressView;
use crate::units;
use anyhow::{Context, bail};
use bt_engine::config::EncryptionMode;
use bt_engine::{AddTorrent, Session, SessionConfig, TorrentStats};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// A .torrent file or a magnet link.
    torrent: String,
    /// Folder to download into; the content goes to OUT/<torrent name>.
    #[arg(long, short)]
    out: PathBuf,
    /// Port to listen on for peers (default: 6881, or a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Local address to use for peer connections.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Connect to this peer too (repeatable).
    #[arg(long = "peer", value_name = "IP:PORT")]
    peers: Vec<SocketAddr>,
    /// Keep seeding after the download completes, until Ctrl-C.
    #[arg(long)]
    seed: bool,
    /// Give up when no tracker answered and no peer connected for this many
    /// seconds (0 = wait forever).
    #[arg(long, default_value_t = 120)]
    stall_timeout: u64,
    /// Keep resume data here instead of OUT/.riptide.
    #[arg(long)]
    resume_dir: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// Peer-network settings shared by the commands that run a session.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct NetArgs {
    /// Message stream encryption (MSE/PE): `prefer` tries an encrypted
    /// handshake first and falls back to plain, `require` talks only to
    /// peers that encrypt, `disabled` never encrypts.
    #[arg(long, value_enum, default_value_t = Encryption::Prefer)]
    pub encryption: Encryption,
    /// Find peers on the local network by multicast (BEP 14 local service
    /// discovery). Off by default: it announces your torrents to the LAN.
    #[arg(long)]
    pub lsd: bool,
    /// Find peers on the mainline DHT (BEP 5), also for magnets without
    /// trackers. The routing table is kept with the resume data.
    #[arg(long)]
    pub dht: bool,
    /// Join the DHT through this node instead of the well-known routers
    /// (repeatable; implies --dht).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    Disabled,
    #[default]
    Prefer,
    Require,
}

impl NetArgs {
    fn apply(&self, config: &mut SessionConfig) {
        config.encryption = match self.encryption {
            Encryption::Disabled => EncryptionMode::Disabled,
            Encryption::Prefer => EncryptionMode::Prefer,
            Encryption::Require => EncryptionMode::Require,
        };
        config.lsd = self.lsd;
        if self.dht || !self.dht_bootstrap.is_empty() {
            let bootstrap = if self.dht_bootstrap.is_empty() {
                bt_engine::config::DHT_ROUTERS.map(String::from).to_vec()
            } else {
                self.dht_bootstrap.clone()
            };
            config.dht = Some(bt_engine::config::DhtConfig {
                bootstrap,
                port: None,
            });
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let source = super::source::parse(&args.torrent)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the output folder {}", args.out.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(download(args, source))
}

pub async fn start_session_with(
    out: &std::path::Path,
    bind: IpAddr,
    port: Option<u16>,
    resume_dir: Option<PathBuf>,
    net: &NetArgs,
) -> anyhow::Result<Session> {
    let resume_dir = resume_dir.unwrap_or_else(|| out.join(".riptide"));
    let mut base = SessionConfig {
        bind_ip: bind,
        resume_dir: Some(resume_dir),
        ..SessionConfig::default()
    };
    net.apply(&mut base);
    start_on_port(base, port).await
}

/// Starts a session on `port`, or without one on the conventional port
/// first, like most clients, and any free one otherwise.
pub async fn start_on_port(base: SessionConfig, port: Option<u16>) -> anyhow::Result<Session> {
    if let Some(port) = port {
        return Ok(Session::start(SessionConfig {
            listen_port: port,
            ..base
        })
        .await?);
    }
    for port in 6881..=6889 {
        if let Ok(s) = Session::start(SessionConfig {
            listen_port: port,
            ..base.clone()
        })
        .await
        {
            return Ok(s);
        }
    }
    Ok(Session::start(SessionConfig {
        listen_port: 0,
        ..base
    })
    .await?)
}

async fn download(args: Args, source: bt_engine::TorrentSource) -> anyhow::Result<()> {
    let session = start_session_with(
        &args.out,
        args.bind,
        args.port,
        args.resume_dir.clone(),
        &args.net,
    )
    .await?;
    let handle = session
        .add_torrent(AddTorrent {
            source,
            download_dir: args.out.clone(),
            peers: args.peers.clone(),
            paused: false,
        })
        .await?;
    let bar = ProgressView::new();
    let started = Instant::now();
    let mut last_contact = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let done = handle.wait_complete();
    tokio::pin!(done);
    let outcome: anyhow::Result<bool> = loop {
        tokio::select! {
            r = &mut done => break r.map(|()| true).map_err(anyhow::Error::msg),
            _ = tokio::signal::ctrl_c() => break Ok(false),
            _ = tick.tick() => {
                let s = handle.stats();
                bar.update(&s);
                if s.peers > 0 || s.tracker_ok {
                    last_contact = Instant::now();
                }
                if args.stall_timeout > 0 && last_contact.elapsed() > Duration::from_secs(args.stall_timeout) {
                    break Err(stall_error(&s, args.stall_timeout));
                }
            }
        }
    };
    let stats = handle.stats();
    bar.finish(&stats);
    match outcome {
        Err(e) => {
            session.shutdown().await;
            return Err(e);
        }
        Ok(false) => {
            eprintln!("interrupted; progress is saved and the download resumes next time");
            session.shutdown().await;
            bail!("interrupted before the download completed");
        }
        Ok(true) => {}
    }
    handle.checkpoint().await;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "done: {} in {:.1}s ({}) -> {}",
        units::bytes(stats.total_bytes),
        secs,
        units::rate((stats.downloaded as f64 / secs.max(0.001)) as u64),
        stats.download_dir.join(&stats.name).display()
    );
    if args.seed {
        eprintln!(
            "seeding on port {}; press Ctrl-C to stop",
            session.listen_addr().port()
        );
        let seed_bar = ProgressView::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => seed_bar.update(&handle.stats()),
            }
        }
        seed_bar.finish(&handle.stats());
    }
    session.shutdown().await;
    Ok(())
}

fn stall_error(s: &TorrentStats, secs: u64) -> anyhow::Error {
    match (&s.tracker_error, s.has_trackers) {
        (Some(e), _) => anyhow::anyhow!(
            "no tracker answered and no peer connected in {secs}s (last tracker error: {e})"
        ),
        (None, true) => anyhow::anyhow!("no tracker answered and no peer connected in {secs}s"),
        (None, false) => anyhow::anyhow!(
            "the torrent has no trackers and no peer connected in {secs}s; give peers with --peer"
        ),
    }
}
