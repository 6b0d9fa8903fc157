//! `riptide serve`: one process with the engine, the library and the web
//! server (pages, REST API, media, auth).
//!
//! A request goes through, in order: the connection limits and header
//! timeout of the listener ([`listener`]), [`guard::outer`] (client
//! address, Host allow-list, API rate limit, body size and time limits,
//! security headers), [`auth::authn`] (who is asking, may they, CSRF), then
//! the handler from the route table ([`routes`]): pages ([`pages`]), the
//! JSON API ([`api`]) and media ([`media`]), which call the torrent manager
//! ([`downloads`]), the library database and the streaming services.

pub mod api;
pub mod auth;
pub mod downloads;
pub mod error;
pub mod guard;
pub mod listener;
pub mod media;
pub mod pages;
pub mod routes;

use anyhow::Context;
use axum::Router;
use bt_engine::{Session, SessionConfig};
use media_library::{Db, Library, LibraryConfig, TmdbConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streaming::hls::{HlsConfig, HlsService};
use streaming::pretranscode::{PreTranscodeConfig, PreTranscoder};
use streaming::token::Signer;

use crate::config::ServeConfig;

pub type AppState = Arc<App>;

pub struct App {
    pub cfg: ServeConfig,
    pub db: Db,
    pub library: Library,
    pub downloads: Arc<downloads::Downloads>,
    pub signer: Signer,
    pub hls: HlsService,
    pub pretranscoder: Option<PreTranscoder>,
    pub pool: ffmpeg::Pool,
    pub api_limiter: guard::RateLimiter,
    pub login_ip_limiter: guard::LoginLimiter,
    pub login_account_limiter: guard::LoginLimiter,
    pub hash_permits: tokio::sync::Semaphore,
    pub dummy_hash: String,
    pub setup_lock: tokio::sync::Mutex<()>,
    /// Torrent files whose container was sniffed already.
    pub sniffed: media::Sniffed,
    pub started: Instant,
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The key that signs stream URLs, kept across restarts so URLs handed to
/// players stay valid: `DATA_DIR/stream-key` (0600), made on first start.
fn signing_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("stream-key");
    match std::fs::read(&path) {
        Ok(k) if k.len() >= 32 => return Ok(k),
        Ok(_) => anyhow::bail!(
            "{} is damaged (shorter than 32 bytes); delete it (stream URLs given out so far stop working)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let key: [u8; 32] = rand::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(&key)?;
    f.sync_all()?;
    Ok(key.to_vec())
}

async fn start_engine(cfg: &ServeConfig) -> anyhow::Result<Session> {
    let base = SessionConfig {
        bind_ip: cfg.engine.bind,
        resume_dir: Some(cfg.data_dir.join("resume")),
        max_peers_per_torrent: cfg.engine.max_peers_per_torrent,
        max_connections: cfg.engine.max_connections,
        encryption: cfg.engine.encryption,
        lsd: cfg.engine.lsd,
        dht: cfg.engine.dht.clone(),
        ..SessionConfig::default()
    };
    crate::commands::download::start_on_port(base, cfg.engine.port).await
}

impl App {
    /// Opens the database, the media root, the engine (re-adding known
    /// torrents) and the streaming services.
    pub async fn open(cfg: ServeConfig) -> anyhow::Result<AppState> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create the data folder {}", cfg.data_dir.display()))?;
        let mut lib_cfg = LibraryConfig::new(&cfg.data_dir);
        lib_cfg.database_url = cfg.database_url.clone();
        lib_cfg.media_root = cfg.media_root.clone();
        lib_cfg.tmdb = TmdbConfig {
            api_key: cfg.tmdb_api_key.clone(),
            base_url: cfg.tmdb_url.clone(),
            ..TmdbConfig::default()
        };
        let library = Library::open(lib_cfg).await?;
        let db = library.db().clone();
        let manifest = {
            let root = cfg.media_root.clone();
            tokio::task::spawn_blocking(move || piece_store::StorageManifest::open(&root)).await??
        };
        let signer = Signer::new(&signing_key(&cfg.data_dir)?);
        let session = start_engine(&cfg).await?;
        let pool = ffmpeg::Pool::new(ffmpeg::PoolConfig::default());
        let hls_root = cfg.data_dir.join("hls");
        // Sessions of a previous run are dead: their ffmpeg is gone.
        let _ = std::fs::remove_dir_all(&hls_root);
        let hls = HlsService::new(HlsConfig::new(hls_root), pool.clone());
        let pretranscoder = if cfg.pretranscode {
            let household: Vec<_> = cfg
                .household
                .iter()
                .filter_map(|n| streaming::profiles::builtin(n))
                .collect();
            match PreTranscoder::new(PreTranscodeConfig::new(household), pool.clone()) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("pre-transcoding is off: {e}");
                    None
                }
            }
        } else {
            None
        };
        let downloads = downloads::Downloads::new(
            session,
            library.clone(),
            cfg.media_root.clone(),
            cfg.data_dir.join("torrents"),
            manifest,
            pretranscoder.clone(),
        )?;
        let dummy_hash = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let salt = SaltString::encode_b64(&[7u8; 16]).expect("16 bytes encode");
            argon2::Argon2::default()
                .hash_password(b"not a password", &salt)
                .expect("hashing works")
                .to_string()
        };
        let app = Arc::new(App {
            api_limiter: guard::RateLimiter::new(cfg.limits.api_requests_per_minute),
            login_ip_limiter: guard::LoginLimiter::new(
                cfg.limits.login_attempts_per_ip,
                cfg.limits.login_window,
            ),
            login_account_limiter: guard::LoginLimiter::new(
                cfg.limits.login_attempts_per_account,
                cfg.limits.login_window,
            ),
            hash_permits: tokio::sync::Semaphore::new(2),
            dummy_hash,
            setup_lock: tokio::sync::Mutex::new(()),
            sniffed: Default::default(),
            started: Instant::now(),
            cfg,
            db,
            library,
            downloads,
            signer,
            hls,
            pretranscoder,
            pool,
        });
        app.downloads.restore().await;
        auth::ensure_admin(&app).await?;
        tokio::spawn(auth::purge_loop(app.clone()));
        Ok(app)
    }

    /// Stops transcoders, writes resume data, closes the database.
    pub async fn shutdown(&self) {
        self.hls.shutdown().await;
        if let Some(p) = &self.pretranscoder {
            p.shutdown();
        }
        self.pool.shutdown(Duration::from_secs(5)).await;
        self.downloads.shutdown().await;
        self.library.close().await;
    }
}

/// The whole HTTP application.
pub fn router(app: AppState) -> Router {
    let mut r = routes::router().with_state(app.clone());
    r = r.merge(streaming::hls::router(app.hls.clone()));
    if let Some(p) = &app.pretranscoder {
        r = r.merge(streaming::pretranscode::router(p.clone()));
    }
    r.fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::authn,
        ))
        .layer(axum::middleware::from_fn_with_state(app, guard::outer))
}
