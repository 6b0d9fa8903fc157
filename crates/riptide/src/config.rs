//! Configuration of `riptide serve` and of the CLI client, read once at
//! start: defaults, then the TOML file, then `RIPTIDE_*` environment
//! variables, then command-line flags. Everything after this module gets
//! typed values; nothing reads the environment later.
//!
//! The file is `DATA_DIR/riptide.toml` unless `--config`/`RIPTIDE_CONFIG`
//! names another; it is optional. Unknown keys are an error, so a typo
//! never silently falls back to a default.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./riptide-data";
pub const CONFIG_FILE: &str = "riptide.toml";

/// The file as written by people; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    media_root: Option<PathBuf>,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    engine: FileEngine,
    #[serde(default)]
    library: FileLibrary,
    #[serde(default)]
    playback: FilePlayback,
    #[serde(default)]
    client: FileClient,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    allowed_hosts: Option<Vec<String>>,
    trusted_proxies: Option<Vec<IpAddr>>,
    secure_cookies: Option<bool>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    max_body_bytes: Option<usize>,
    max_torrent_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    login_attempts_per_ip: Option<u32>,
    login_attempts_per_account: Option<u32>,
    login_window_secs: Option<u64>,
    api_requests_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEngine {
    port: Option<u16>,
    bind: Option<IpAddr>,
    max_peers_per_torrent: Option<usize>,
    max_connections: Option<usize>,
    /// "disabled", "prefer" (default) or "require".
    encryption: Option<String>,
    lsd: Option<bool>,
    dht: Option<bool>,
    /// HOST:PORT nodes; implies `dht`. Default: the well-known routers.
    dht_bootstrap: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLibrary {
    tmdb_api_key: Option<String>,
    tmdb_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlayback {
    household: Option<Vec<String>>,
    pretranscode: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClient {
    server: Option<String>,
    token: Option<String>,
}

/// HTTP hardening.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Host header values accepted (DNS rebinding); `host` or `host:port`.
    pub allowed_hosts: Vec<String>,
    /// Peers whose X-Forwarded-For / X-Forwarded-Proto are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Mark cookies Secure always (else: only when a trusted proxy says
    /// the request came over https).
    pub secure_cookies: bool,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// A client must send its request headers within this time.
    pub header_timeout: Duration,
    /// …and its body within this time.
    pub body_timeout: Duration,
    /// Request bodies (forms, JSON) at most this large.
    pub max_body_bytes: usize,
    /// Uploaded .torrent files at most this large.
    pub max_torrent_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub login_attempts_per_ip: u32,
    pub login_attempts_per_account: u32,
    pub login_window: Duration,
    pub api_requests_per_minute: u32,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub port: Option<u16>,
    pub bind: IpAddr,
    pub max_peers_per_torrent: usize,
    pub max_connections: usize,
    /// MSE/PE policy for peer connections.
    pub encryption: bt_engine::config::EncryptionMode,
    /// Local service discovery (multicast on the LAN); off by default.
    pub lsd: bool,
    /// The mainline DHT; off by default.
    pub dht: Option<bt_engine::config::DhtConfig>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub database_url: Option<String>,
    pub media_root: PathBuf,
    pub http: HttpConfig,
    pub limits: Limits,
    pub engine: EngineConfig,
    pub tmdb_api_key: Option<String>,
    pub tmdb_url: String,
    /// Device profiles of the household (pre-transcode target).
    pub household: Vec<String>,
    pub pretranscode: bool,
    /// First start only: the admin account's password.
    pub admin_password: Option<String>,
}

/// Where a CLI client finds the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: String,
    pub token: Option<String>,
}

/// What the command line said; `None` = not given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// The environment, captured once (tests pass their own).
pub type Env = std::collections::BTreeMap<String, String>;

pub fn process_env() -> Env {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("RIPTIDE_"))
        .collect()
}

fn read_file(path: &Path, required: bool) -> anyhow::Result<FileConfig> {
    let text = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(FileConfig::default());
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the config file {}", path.display()));
        }
    };
    let text = String::from_utf8(text).map_err(|_| {
        anyhow::anyhow!(
            "the config file {} is not UTF-8 text; save it as UTF-8",
            path.display()
        )
    })?;
    toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the config file {} is not valid: {}",
            path.display(),
            e.to_string().trim()
        )
    })
}

fn env_parse<T: std::str::FromStr>(env: &Env, key: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match env.get(key) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{key}={v:?} is not valid: {e}")),
    }
}

fn env_list(env: &Env, key: &str) -> Option<Vec<String>> {
    env.get(key).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn config_path(ov: &Overrides, env: &Env, data_dir: &Path) -> (PathBuf, bool) {
    match ov
        .config
        .clone()
        .or_else(|| env.get("RIPTIDE_CONFIG").map(PathBuf::from))
    {
        Some(p) => (p, true),
        None => (data_dir.join(CONFIG_FILE), false),
    }
}

fn data_dir(ov: &Overrides, env: &Env) -> PathBuf {
    ov.data_dir
        .clone()
        .or_else(|| env.get("RIPTIDE_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

impl ServeConfig {
    pub fn load(ov: &Overrides, env: &Env) -> anyhow::Result<ServeConfig> {
        let data_dir = data_dir(ov, env);
        let (path, required) = config_path(ov, env, &data_dir);
        let file = read_file(&path, required)?;
        let listen = match ov.listen {
            Some(l) => l,
            None => match env_parse(env, "RIPTIDE_LISTEN")? {
                Some(l) => l,
                None => file
                    .listen
                    .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid")),
            },
        };
        let mut allowed_hosts = env_list(env, "RIPTIDE_ALLOWED_HOSTS")
            .or(file.http.allowed_hosts)
            .unwrap_or_default();
        // The names the server is reached by on this machine always work;
        // anything else (a LAN name, a domain) must be listed.
        for h in ["localhost", "127.0.0.1", "[::1]"] {
            allowed_hosts.push(h.to_string());
        }
        if !listen.ip().is_unspecified() {
            allowed_hosts.push(match listen.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            });
        }
        let trusted_proxies = match env_list(env, "RIPTIDE_TRUSTED_PROXIES") {
            Some(list) => list
                .iter()
                .map(|s| {
                    s.parse::<IpAddr>().map_err(|e| {
                        anyhow::anyhow!("RIPTIDE_TRUSTED_PROXIES: {s:?} is not an IP address: {e}")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => file.http.trusted_proxies.unwrap_or_default(),
        };
        let http = HttpConfig {
            allowed_hosts,
            trusted_proxies,
            secure_cookies: env_parse(env, "RIPTIDE_SECURE_COOKIES")?
                .or(file.http.secure_cookies)
                .unwrap_or(false),
            max_connections: env_parse(env, "RIPTIDE_MAX_CONNECTIONS")?
                .or(file.http.max_connections)
                .unwrap_or(512),
            max_connections_per_ip: file.http.max_connections_per_ip.unwrap_or(64),
            header_timeout: Duration::from_secs(file.http.header_timeout_secs.unwrap_or(10)),
            body_timeout: Duration::from_secs(file.http.body_timeout_secs.unwrap_or(30)),
            max_body_bytes: file.http.max_body_bytes.unwrap_or(64 * 1024),
            max_torrent_bytes: file.http.max_torrent_bytes.unwrap_or(8 * 1024 * 1024),
        };
        if http.max_connections == 0 || http.max_connections_per_ip == 0 {
            bail!("http.max_connections and http.max_connections_per_ip must be at least 1");
        }
        let limits = Limits {
            login_attempts_per_ip: file.limits.login_attempts_per_ip.unwrap_or(20),
            login_attempts_per_account: file.limits.login_attempts_per_account.unwrap_or(5),
            login_window: Duration::from_secs(file.limits.login_window_secs.unwrap_or(900)),
            api_requests_per_minute: env_parse(env, "RIPTIDE_API_REQUESTS_PER_MINUTE")?
                .or(file.limits.api_requests_per_minute)
                .unwrap_or(1200),
        };
        let engine = EngineConfig {
            port: env_parse(env, "RIPTIDE_PEER_PORT")?.or(file.engine.port),
            bind: env_parse(env, "RIPTIDE_PEER_BIND")?
                .or(file.engine.bind)
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            max_peers_per_torrent: file.engine.max_peers_per_torrent.unwrap_or(100),
            max_connections: file.engine.max_connections.unwrap_or(500),
            encryption: match file.engine.encryption.as_deref() {
                None | Some("prefer") => bt_engine::config::EncryptionMode::Prefer,
                Some("require") => bt_engine::config::EncryptionMode::Require,
                Some("disabled") => bt_engine::config::EncryptionMode::Disabled,
                Some(other) => anyhow::bail!(
                    "engine.encryption = {other:?} is not valid: use \"disabled\", \"prefer\" or \"require\""
                ),
            },
            lsd: file.engine.lsd.unwrap_or(false),
            dht: match (file.engine.dht, file.engine.dht_bootstrap) {
                (_, Some(nodes)) if !nodes.is_empty() => Some(bt_engine::config::DhtConfig {
                    bootstrap: nodes,
                    port: None,
                }),
                (Some(true), _) => Some(bt_engine::config::DhtConfig {
                    bootstrap: bt_engine::config::DHT_ROUTERS.map(String::from).to_vec(),
                    port: None,
                }),
                _ => None,
            },
        };
        let household = env_list(env, "RIPTIDE_HOUSEHOLD")
            .or(file.playback.household)
            .unwrap_or_else(|| vec!["chrome".into()]);
        for name in &household {
            if streaming::profiles::builtin(name).is_none() {
                bail!(
                    "playback.household: unknown device profile {name:?}; known: {}",
                    streaming::profiles::names().join(", ")
                );
            }
        }
        let media_root = env
            .get("RIPTIDE_MEDIA_ROOT")
            .map(PathBuf::from)
            .or(file.media_root)
            .unwrap_or_else(|| data_dir.join("media"));
        Ok(ServeConfig {
            listen,
            config_file: path.exists().then_some(path),
            database_url: env
                .get("RIPTIDE_DATABASE_URL")
                .cloned()
                .or(file.database_url),
            media_root,
            http,
            limits,
            engine,
            tmdb_api_key: env
                .get("RIPTIDE_TMDB_API_KEY")
                .cloned()
                .or(file.library.tmdb_api_key)
                .filter(|k| !k.is_empty()),
            tmdb_url: env
                .get("RIPTIDE_TMDB_URL")
                .cloned()
                .or(file.library.tmdb_url)
                .unwrap_or_else(|| media_library::tmdb::DEFAULT_BASE_URL.to_string()),
            household,
            pretranscode: env_parse(env, "RIPTIDE_PRETRANSCODE")?
                .or(file.playback.pretranscode)
                .unwrap_or(true),
            admin_password: env
                .get("RIPTIDE_ADMIN_PASSWORD")
                .cloned()
                .filter(|p| !p.is_empty()),
            data_dir,
        })
    }
}

impl ClientConfig {
    pub fn load(ov: &Overrides, env: &Env) -> anyhow::Result<ClientConfig> {
        let data_dir = data_dir(ov, env);
        let (path, required) = config_path(ov, env, &data_dir);
        let file = read_file(&path, required)?;
        let listen = file.listen.map(|l| match l.ip() {
            ip if ip.is_unspecified() => format!("http://127.0.0.1:{}", l.port()),
            _ => format!("http://{l}"),
        });
        Ok(ClientConfig {
            server: env
                .get("RIPTIDE_SERVER")
                .cloned()
                .or(file.client.server)
                .or(listen)
                .unwrap_or_else(|| format!("http://{DEFAULT_LISTEN}")),
            token: env
                .get("RIPTIDE_TOKEN")
                .cloned()
                .or(file.client.token)
                .filter(|t| !t.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let ov = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        let c = ServeConfig::load(&ov, &env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.media_root, dir.path().join("media"));
        assert!(c.config_file.is_none());

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "listen = \"127.0.0.1:9000\"\n[http]\nallowed_hosts = [\"tv.home\"]\n[limits]\nlogin_attempts_per_account = 3\n",
        )
        .unwrap();
        let c = ServeConfig::load(&ov, &env(&[])).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(c.http.allowed_hosts.contains(&"tv.home".to_string()));
        assert_eq!(c.limits.login_attempts_per_account, 3);

        let c = ServeConfig::load(&ov, &env(&[("RIPTIDE_LISTEN", "127.0.0.1:9001")])).unwrap();
        assert_eq!(c.listen.port(), 9001);
        let ov2 = Overrides {
            listen: Some("127.0.0.1:9002".parse().unwrap()),
            ..ov.clone()
        };
        let c = ServeConfig::load(&ov2, &env(&[("RIPTIDE_LISTEN", "127.0.0.1:9001")])).unwrap();
        assert_eq!(c.listen.port(), 9002);
    }

    #[test]
    fn engine_network_settings() {
        let dir = tempfile::tempdir().unwrap();
        let ov = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        let c = ServeConfig::load(&ov, &env(&[])).unwrap();
        assert_eq!(
            c.engine.encryption,
            bt_engine::config::EncryptionMode::Prefer
        );
        assert!(!c.engine.lsd && c.engine.dht.is_none());
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[engine]\nencryption = \"require\"\nlsd = true\ndht_bootstrap = [\"127.0.0.1:6881\"]\n",
        )
        .unwrap();
        let c = ServeConfig::load(&ov, &env(&[])).unwrap();
        assert_eq!(
            c.engine.encryption,
            bt_engine::config::EncryptionMode::Require
        );
        assert!(c.engine.lsd);
        assert_eq!(c.engine.dht.unwrap().bootstrap, vec!["127.0.0.1:6881"]);
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[engine]\nencryption = \"always\"\n",
        )
        .unwrap();
        let e = ServeConfig::load(&ov, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("engine.encryption"), "{e}");
    }

    #[test]
    fn bad_config_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let ov = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        std::fs::write(dir.path().join(CONFIG_FILE), "lisen = 1\n").unwrap();
        let e = ServeConfig::load(&ov, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("riptide.toml") && e.contains("lisen"), "{e}");
        std::fs::write(dir.path().join(CONFIG_FILE), b"\xff\xfe").unwrap();
        let e = ServeConfig::load(&ov, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("UTF-8"), "{e}");
        std::fs::remove_file(dir.path().join(CONFIG_FILE)).unwrap();
        let e = ServeConfig::load(&ov, &env(&[("RIPTIDE_LISTEN", "nope")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("RIPTIDE_LISTEN"), "{e}");
        let e = ServeConfig::load(&ov, &env(&[("RIPTIDE_HOUSEHOLD", "toaster")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("toaster"), "{e}");
    }

    #[test]
    fn client_reads_token_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ov = Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Overrides::default()
        };
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "listen = \"0.0.0.0:8090\"\n[client]\ntoken = \"rt_abc\"\n",
        )
        .unwrap();
        let c = ClientConfig::load(&ov, &env(&[])).unwrap();
        assert_eq!(c.server, "http://127.0.0.1:8090");
        assert_eq!(c.token.as_deref(), Some("rt_abc"));
    }
}
