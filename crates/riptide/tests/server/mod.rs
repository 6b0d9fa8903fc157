//! Runs `riptide serve` for a test: a free port on 127.0.0.1, its own data
//! folder, its log in a file; killed when dropped.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_PASSWORD: &str = "correct horse battery";

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server and waits until it answers.
    pub fn start(data: &Path, log_dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = test_swarm::free_port(std::net::Ipv4Addr::LOCALHOST);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        std::fs::create_dir_all(log_dir).unwrap();
        let log = log_dir.join(format!("riptide-serve-{port}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_riptide"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data)
            .env("RIPTIDE_LOG", "info")
            .env_remove("RIPTIDE_ADMIN_PASSWORD")
            .env_remove("RIPTIDE_CONFIG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err.log")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn riptide serve");
        let mut s = Server {
            child,
            addr,
            data: data.to_path_buf(),
            log,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("riptide serve exited ({status}): {}", s.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && s.get("/login", &[]).is_ok_and(|r| r.status == 200)
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "server did not start: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(&self.log).unwrap_or_default();
        s += &std::fs::read_to_string(self.log.with_extension("err.log")).unwrap_or_default();
        s
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<test_swarm::http::Response, String> {
        test_swarm::http::request(
            self.addr,
            method,
            path,
            headers,
            body,
            Duration::from_secs(30),
        )
    }

    pub fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<test_swarm::http::Response, String> {
        self.request("GET", path, headers, b"")
    }

    /// Creates the admin on the setup page; returns the session cookie.
    pub fn setup_admin(&self) -> String {
        let body = format!(
            "username=admin&password={0}&confirm={0}",
            form_escape(ADMIN_PASSWORD)
        );
        let r = self
            .request(
                "POST",
                "/setup",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(r.status, 303, "setup: {}", r.text());
        cookie_of(&r).expect("setup sets a session cookie")
    }

    /// Logs in; returns the session cookie.
    pub fn login(&self, user: &str, password: &str) -> test_swarm::http::Response {
        let body = format!(
            "username={}&password={}",
            form_escape(user),
            form_escape(password)
        );
        self.request(
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .unwrap()
    }

    /// Creates an API token with the given session cookie.
    pub fn api_token(&self, cookie: &str) -> String {
        let origin = self.base();
        let r = self
            .request(
                "POST",
                "/api/v1/tokens",
                &[
                    ("Cookie", cookie),
                    ("Origin", &origin),
                    ("Content-Type", "application/json"),
                ],
                br#"{"name":"test"}"#,
            )
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        let j = test_swarm::json::parse(&r.text()).unwrap();
        j.get("token").and_then(|t| t.as_str()).unwrap().to_string()
    }

    /// GET of an API path with a bearer token; the JSON body of a 200.
    pub fn api_get(&self, path: &str, token: &str) -> test_swarm::json::Json {
        let auth = format!("Bearer {token}");
        let r = self.get(path, &[("Authorization", &auth)]).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        test_swarm::json::parse(&r.text()).unwrap()
    }

    /// Adds a magnet through the API (201 Created).
    pub fn add_magnet(&self, token: &str, magnet: &str) {
        let auth = format!("Bearer {token}");
        let r = self
            .request(
                "POST",
                "/api/v1/torrents",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                format!("{{\"magnet\":\"{magnet}\"}}").as_bytes(),
            )
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn form_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `riptide_session=…` from a Set-Cookie header.
pub fn cookie_of(r: &test_swarm::http::Response) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap_or("").to_string())
        .find(|c| c.starts_with("riptide_session=") && c.len() > "riptide_session=".len())
}
