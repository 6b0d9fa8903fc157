//! `riptide add|ls|pause|resume|rm`: a client of a running `riptide serve`
//! over its REST API. The server address and API token come from
//! `riptide.toml` (`[client] server`, `token`), `RIPTIDE_SERVER` /
//! `RIPTIDE_TOKEN`, or `--server` / `--token`.

use anyhow::{Context, bail};
use base64::Engine as _;
use serde::Deserialize;
use std::path::PathBuf;

use crate::config::{ClientConfig, Overrides, process_env};
use crate::units;

#[derive(clap::Args, Clone)]
pub struct Conn {
    /// Server URL [default: from riptide.toml, else http://127.0.0.1:8080; env RIPTIDE_SERVER].
    #[arg(long, global = true)]
    server: Option<String>,
    /// API token (Settings → API tokens) [default: `[client] token` in riptide.toml; env RIPTIDE_TOKEN].
    #[arg(long, global = true, hide_env_values = true)]
    token: Option<String>,
    /// Config file [default: ./riptide-data/riptide.toml; env RIPTIDE_CONFIG].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data folder whose riptide.toml to read [env RIPTIDE_DATA_DIR].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// A magnet link or a .torrent file.
    torrent: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct IdArgs {
    /// Info-hash (40 hex digits), or a unique prefix of it as `riptide ls` shows.
    id: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Info-hash, or a unique prefix of it.
    id: String,
    /// Also delete the downloaded files.
    #[arg(long)]
    delete_data: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Deserialize)]
struct Torrent {
    info_hash: String,
    name: String,
    state: String,
    progress: f64,
    total_bytes: u64,
    download_rate: u64,
    upload_rate: u64,
    peers: usize,
}

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Client {
    fn new(conn: &Conn) -> anyhow::Result<Client> {
        let mut env = process_env();
        if let Some(s) = &conn.server {
            env.insert("RIPTIDE_SERVER".into(), s.clone());
        }
        if let Some(t) = &conn.token {
            env.insert("RIPTIDE_TOKEN".into(), t.clone());
        }
        let cfg = ClientConfig::load(
            &Overrides {
                config: conn.config.clone(),
                data_dir: conn.data_dir.clone(),
                listen: None,
            },
            &env,
        )?;
        let Some(token) = cfg.token else {
            bail!(
                "no API token: create one in the web UI (Settings → API tokens) and put it in riptide.toml under [client] as token = \"rt_…\", or pass --token / RIPTIDE_TOKEN"
            );
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("cannot set up the HTTP client")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Client {
            base: cfg.server.trim_end_matches('/').to_string(),
            token,
            http,
            rt,
        })
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let mut req = self.http.request(method, &url).bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.with_context(|| {
                format!(
                    "cannot reach the server at {} (is `riptide serve` running?)",
                    self.base
                )
            })?;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            if status >= 400 {
                let msg = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or(text);
                bail!("the server said: {msg} (HTTP {status})");
            }
            Ok((status, text))
        })
    }

    fn list(&self) -> anyhow::Result<Vec<Torrent>> {
        let (_, text) = self.call(reqwest::Method::GET, "/api/v1/torrents", None)?;
        serde_json::from_str(&text).context("the server's answer is not a torrent list")
    }

    /// The full info-hash for an id or a unique prefix.
    fn resolve(&self, id: &str) -> anyhow::Result<String> {
        let id = id.trim().to_ascii_lowercase();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{id:?} is not an info-hash; `riptide ls` lists them");
        }
        let matches: Vec<String> = self
            .list()?
            .into_iter()
            .map(|t| t.info_hash)
            .filter(|h| h.starts_with(&id))
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one")),
            0 => bail!("no torrent's info-hash starts with {id}; `riptide ls` lists them"),
            n => bail!("{n} torrents start with {id}; give more digits"),
        }
    }
}

pub fn add(args: AddArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.conn)?;
    let body = if args.torrent.starts_with("magnet:") {
        serde_json::json!({ "magnet": args.torrent })
    } else {
        let path = PathBuf::from(&args.torrent);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::json!({ "torrent_base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
    };
    let (_, text) = c.call(reqwest::Method::POST, "/api/v1/torrents", Some(body))?;
    let t: Torrent = serde_json::from_str(&text).context("unexpected answer from the server")?;
    println!("added {} {}", t.info_hash, t.name);
    Ok(())
}

pub fn ls(args: LsArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.conn)?;
    if args.json {
        let (_, text) = c.call(reqwest::Method::GET, "/api/v1/torrents", None)?;
        println!("{text}");
        return Ok(());
    }
    let list = c.list()?;
    if list.is_empty() {
        println!("no torrents");
        return Ok(());
    }
    println!(
        "{:<12} {:>6} {:<17} {:>10} {:>11} {:>11} {:>5}  name",
        "id", "done", "state", "size", "down", "up", "peers"
    );
    for t in list {
        println!(
            "{:<12} {:>5.1}% {:<17} {:>10} {:>11} {:>11} {:>5}  {}",
            &t.info_hash[..12.min(t.info_hash.len())],
            t.progress * 100.0,
            t.state,
            units::bytes(t.total_bytes),
            units::rate(t.download_rate),
            units::rate(t.upload_rate),
            t.peers,
            t.name
        );
    }
    Ok(())
}

pub fn pause(args: IdArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.conn)?;
    let ih = c.resolve(&args.id)?;
    c.call(
        reqwest::Method::POST,
        &format!("/api/v1/torrents/{ih}/pause"),
        None,
    )?;
    println!("paused {ih}");
    Ok(())
}

pub fn resume(args: IdArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.conn)?;
    let ih = c.resolve(&args.id)?;
    c.call(
        reqwest::Method::POST,
        &format!("/api/v1/torrents/{ih}/resume"),
        None,
    )?;
    println!("resumed {ih}");
    Ok(())
}

pub fn rm(args: RmArgs) -> anyhow::Result<()> {
    let c = Client::new(&args.conn)?;
    let ih = c.resolve(&args.id)?;
    c.call(
        reqwest::Method::DELETE,
        &format!("/api/v1/torrents/{ih}?delete_data={}", args.delete_data),
        None,
    )?;
    println!(
        "removed {ih}{}",
        if args.delete_data {
            " and its files"
        } else {
            ""
        }
    );
    Ok(())
}
