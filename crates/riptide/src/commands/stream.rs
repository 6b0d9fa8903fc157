//! `riptide stream`: play a torrent while it downloads.
//!
//! Starts the download, serves the chosen file at
//! `http://ADDR/stream/{info_hash}/{file_index}` with HTTP ranges, prints
//! that URL and optionally launches a player. On a loopback address no token
//! is needed; on any other address the URL carries a signed token, so that
//! only whoever sees the printed URL can play.

use crate::progress::ProgressView;
use anyhow::Context;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bt_engine::{AddTorrent, FileInfo, TorrentHandle};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use streaming::token::Signer;
use tokio::io::AsyncReadExt;

#[derive(clap::Args)]
pub struct Args {
    /// A .torrent file or a magnet link.
    torrent: String,
    /// Which file to serve (default: the largest video file).
    #[arg(long)]
    file: Option<usize>,
    /// Address of the HTTP server.
    #[arg(long, default_value = "127.0.0.1:8888")]
    listen: SocketAddr,
    /// Folder to download into.
    #[arg(long, short, default_value = "./riptide-data/downloads")]
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
    /// Start this player on the URL (e.g. mpv, vlc).
    #[arg(long)]
    player: Option<String>,
    /// Require a signed token in the URL even on a loopback address (e.g.
    /// behind a reverse proxy). Other addresses always require one.
    #[arg(long)]
    token: bool,
    #[command(flatten)]
    net: super::download::NetArgs,
}

/// Bytes of a file's head read to find its container index.
const SNIFF_BYTES: usize = 64 * 1024;
/// Bytes at the end of a file fetched early when its index may be there.
const TAIL_GUESS: u64 = 512 << 10;
/// How long a stream URL printed for a non-loopback address stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

pub fn run(args: Args) -> anyhow::Result<()> {
    let source = super::source::parse(&args.torrent)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create the output folder {}", args.out.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, source))
}

struct Server {
    handle: TorrentHandle,
    info_hash: String,
    signer: Option<Signer>,
    /// Files whose container was sniffed already (once each).
    sniffed: std::sync::Mutex<std::collections::HashSet<usize>>,
}

async fn serve(args: Args, source: bt_engine::TorrentSource) -> anyhow::Result<()> {
    let session =
        super::download::start_session_with(&args.out, args.bind, args.port, None, &args.net)
            .await?;
    let handle = session
        .add_torrent(AddTorrent {
            source,
            download_dir: args.out.clone(),
            peers: args.peers.clone(),
            paused: false,
        })
        .await?;
    let signer = (args.token || !args.listen.ip().is_loopback()).then(|| {
        let secret: [u8; 32] = rand::random();
        Signer::new(&secret)
    });
    let server = Arc::new(Server {
        info_hash: handle.info_hash().to_hex(),
        handle: handle.clone(),
        signer,
        sniffed: Default::default(),
    });
    let app = axum::Router::new()
        .route(
            "/stream/{info_hash}/{file}",
            axum::routing::get(stream_file),
        )
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let http = tokio::spawn(async move { axum::serve(listener, app).await });

    // Choose the file once the metadata is known, and start on its head.
    let files = handle.files().await?;
    let index = match args.file {
        Some(i) if i < files.len() => i,
        Some(i) => anyhow::bail!(
            "the torrent has {} files; there is no file {i}",
            files.len()
        ),
        None => default_file(&files),
    };
    tokio::spawn(prepare(server.clone(), index));
    let path = format!("/stream/{}/{index}", server.info_hash);
    let url = match &server.signer {
        Some(s) => format!(
            "http://{}{path}?token={}",
            args.listen,
            s.sign(&path, now() + TOKEN_TTL.as_secs())
        ),
        None => format!("http://{}{path}", args.listen),
    };
    println!("{url}");
    eprintln!(
        "streaming {} ({})",
        files[index].path.display(),
        crate::units::bytes(files[index].length)
    );
    let mut player = match &args.player {
        Some(p) => Some(
            tokio::process::Command::new(p)
                .arg(&url)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start the player `{p}`"))?,
        ),
        None => None,
    };

    let bar = ProgressView::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            r = async { player.as_mut().expect("guarded").wait().await }, if player.is_some() => {
                let _ = r;
                break;
            }
            _ = tick.tick() => {
                let s = handle.stats();
                if let Some(e) = &s.error {
                    bar.finish(&s);
                    session.shutdown().await;
                    anyhow::bail!("{e}");
                }
                bar.update(&s);
            }
        }
    }
    bar.finish(&handle.stats());
    http.abort();
    session.shutdown().await;
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Containers whose index is often at the end of the file (MP4 written
/// without faststart, Matroska cues).
fn index_may_be_at_end(path: &std::path::Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(ext.as_str(), "mp4" | "m4v" | "mov" | "mkv" | "webm")
}

/// The largest video file, or the largest file when none looks like video.
fn default_file(files: &[FileInfo]) -> usize {
    files
        .iter()
        .filter(|f| !f.padding)
        .max_by_key(|f| (streaming::mime::is_video(&f.path), f.length))
        .map_or(0, |f| f.index)
}

/// Reads the head of a file (which makes it the most urgent piece), finds
/// the container's index and duration, and has both fetched first.
async fn prepare(server: Arc<Server>, file: usize) {
    if !server.sniffed.lock().expect("not poisoned").insert(file) {
        return;
    }
    let Ok(mut stream) = server
        .handle
        .open_file_range(file, 0..SNIFF_BYTES as u64)
        .await
    else {
        return;
    };
    let len = stream.len();
    // MP4 without faststart keeps its index at the end, and players read it
    // right after the head: ask for the tail now, just after the head,
    // rather than a round trip later. It is part of the download anyway.
    let path = server
        .handle
        .files()
        .await
        .ok()
        .and_then(|f| f.get(file).map(|f| f.path.clone()));
    if path.as_deref().is_some_and(index_may_be_at_end) {
        server.handle.prefetch(
            file,
            // Small files: the tail guess must not swallow the whole file.
            std::slice::from_ref(&(len.saturating_sub(TAIL_GUESS.min(len / 8))..len)),
            Duration::from_secs(30),
        );
    }
    let mut head = vec![0u8; SNIFF_BYTES.min(len as usize)];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    drop(stream);
    let sniffed = streaming::container::sniff(&head[..got], len);
    tracing::info!(file, kind = ?sniffed.kind, index = ?sniffed.index, duration = ?sniffed.duration_secs, "container sniffed");
    if !sniffed.index.is_empty() {
        server
            .handle
            .prefetch(file, &sniffed.index, Duration::from_secs(60));
    }
    if let Some(d) = sniffed.duration_secs.filter(|d| *d > 1.0) {
        server
            .handle
            .set_file_bitrate(file, (len as f64 / d) as u64);
    }
}

async fn stream_file(
    State(server): State<Arc<Server>>,
    UrlPath((info_hash, file)): UrlPath<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    if !info_hash.eq_ignore_ascii_case(&server.info_hash) {
        return (StatusCode::NOT_FOUND, "no such torrent").into_response();
    }
    let Ok(file) = file.parse::<usize>() else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    if let Some(signer) = &server.signer {
        let path = format!("/stream/{}/{file}", server.info_hash);
        let Some(token) = query.get("token") else {
            return (StatusCode::FORBIDDEN, "this URL needs a token").into_response();
        };
        if let Err(e) = signer.verify(&path, token, now()) {
            return (StatusCode::FORBIDDEN, e.to_string()).into_response();
        }
    }
    let files = match server.handle.files().await {
        Ok(f) => f,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let Some(info) = files.get(file).filter(|f| !f.padding) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    tokio::spawn(prepare(server.clone(), file));
    let etag = format!("\"{}-{file}-{}\"", server.info_hash, info.length);
    let resource = streaming::range::Resource {
        len: info.length,
        content_type: streaming::mime::content_type(&info.path),
        etag: &etag,
    };
    let handle = server.handle.clone();
    streaming::range::respond(&method, &headers, resource, |range| async move {
        handle.open_file_range(file, range).await
    })
    .await
}
