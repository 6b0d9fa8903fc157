//! Security of `riptide serve`: every route of the route table needs
//! auth (and admin routes an admin), brute force gets 429 and a lockout,
//! X-Forwarded-For counts only from trusted proxies, cross-origin state
//! changes are refused, a foreign Host is refused, slowloris cannot
//! exhaust connections, oversize and slow bodies are refused.

mod server;

use server::{ADMIN_PASSWORD, Server, cookie_of};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

fn routes() -> Vec<(String, String, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .arg("routes")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut it = l.split_whitespace();
            (
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
            )
        })
        .collect()
}

/// Sends a request and reads only up to the end of the response headers.
fn status_of(addr: SocketAddr, method: &str, path: &str, extra_headers: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status line: {head:?}"))
}

/// A concrete path for a route template.
fn fill(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{info_hash}" => "0123456789abcdef0123456789abcdef01234567",
            "{session}" => "0123456789abcdef0123456789abcdef",
            "{name}" => "master.m3u8",
            "{file}" if path.starts_with("/static") => "style.css",
            "{file}" if path.starts_with("/posters") => "1.jpg",
            "{file}" => "0",
            "{id}" => "1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn data_with_config(work: &tempfile::TempDir, toml: &str) -> std::path::PathBuf {
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("riptide.toml"), toml).unwrap();
    data
}

fn start(work: &tempfile::TempDir, toml: &str) -> Server {
    let data = data_with_config(work, toml);
    Server::start(&data, &work.path().join("logs"), &[])
}

fn is_login_redirect(r: &test_swarm::http::Response) -> bool {
    r.status == 303
        && r.header("location")
            .is_some_and(|l| l.starts_with("/login"))
}

#[test]
fn every_route_requires_auth() {
    let work = tempfile::tempdir().unwrap();
    let srv = start(&work, "");
    let routes = routes();
    assert!(routes.len() > 30, "route table: {routes:?}");
    let mut public = Vec::new();
    for (method, path, access) in &routes {
        let p = fill(path);
        if method == "HEAD" {
            // No body to read: check the status line only.
            let r = raw(
                srv.addr,
                None,
                &format!(
                    "HEAD {p} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    srv.addr
                ),
            );
            assert!(r.starts_with("HTTP/1.1 401"), "HEAD {p}: {r}");
            continue;
        }
        let r = srv
            .request(method, &p, &[("Origin", &srv.base())], b"")
            .unwrap();
        if access == "Public" {
            public.push(path.clone());
            assert!(
                r.status != 401 && !is_login_redirect(&r),
                "{method} {p}: {}",
                r.status
            );
        } else {
            assert!(
                r.status == 401 || is_login_redirect(&r),
                "{method} {p} ({access}) answered {} without auth",
                r.status
            );
            if r.status == 401 {
                assert!(r.text().contains("\"error\""), "{method} {p}: {}", r.text());
            }
        }
    }
    // Only these are open: logging in, first-start setup, static assets.
    public.sort();
    public.dedup();
    assert_eq!(
        public,
        [
            "/login",
            "/setup",
            "/static/vendor/{file}",
            "/static/{file}"
        ]
    );
    // Paths outside the table are denied by default, not 404 to strangers.
    for p in [
        "/nope",
        "/api/v2/x",
        "/static/../riptide.db",
        "/media/../../etc/passwd",
    ] {
        let r = srv.get(p, &[]).unwrap();
        assert!(
            r.status == 401 || is_login_redirect(&r),
            "{p}: {}",
            r.status
        );
    }
    // A forged or expired stream token opens nothing.
    let r = srv.get("/media/1?token=9999999999.00", &[]).unwrap();
    assert_eq!(r.status, 401);
    let r = srv
        .get(&format!("/media/1?token=1.{}", "ab".repeat(32)), &[])
        .unwrap();
    assert_eq!(r.status, 401);

    // With an account: user routes open, admin routes need an admin.
    let admin = srv.setup_admin();
    let token = srv.api_token(&admin);
    let auth = format!("Bearer {token}");
    let r = srv
        .request(
            "POST",
            "/api/v1/users",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            br#"{"name":"kid","password":"kid password 1","is_admin":false}"#,
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let kid = srv.login("kid", "kid password 1");
    let kid_cookie = cookie_of(&kid).expect("kid logs in");
    let kid_token = srv.api_token(&kid_cookie);
    let kid_auth = format!("Bearer {kid_token}");
    for (method, path, access) in &routes {
        let p = fill(path);
        // The status line only: some answers are endless (the SSE stream).
        let status = status_of(
            srv.addr,
            method,
            &p,
            &format!("Authorization: {kid_auth}\r\n"),
        );
        assert_ne!(status, 401, "{method} {p}: a user's token is refused");
        if access == "Admin" {
            assert_eq!(status, 403, "{method} {p}: a user reached an admin route");
        }
    }
    // The setup page is closed once an account exists.
    let r = srv.get("/setup", &[]).unwrap();
    assert!(is_login_redirect(&r));
    assert!(!srv.log().contains("panicked"));
}

#[test]
fn brute_force_gets_429_and_lockout() {
    let work = tempfile::tempdir().unwrap();
    let srv = start(
        &work,
        "[limits]\nlogin_attempts_per_account = 3\nlogin_attempts_per_ip = 6\n",
    );
    srv.setup_admin();
    for _ in 0..3 {
        assert_eq!(srv.login("admin", "guess").status, 401);
    }
    // Locked: even the right password is refused until the window passes.
    let r = srv.login("admin", ADMIN_PASSWORD);
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 900);
    assert!(r.text().contains("too many failed logins"));
    // Per address: other account names from the same address run out too.
    assert_eq!(srv.login("bob", "x1").status, 401);
    assert_eq!(srv.login("carol", "x2").status, 401);
    assert_eq!(srv.login("dave", "x3").status, 401);
    let r = srv.login("erin", "x4");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

#[test]
fn forwarded_for_only_from_trusted_proxies() {
    let work = tempfile::tempdir().unwrap();
    let srv = start(
        &work,
        "[limits]\nlogin_attempts_per_account = 100\nlogin_attempts_per_ip = 2\n[http]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    srv.setup_admin();
    let login_from = |xff: &str| {
        srv.request(
            "POST",
            "/login",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Forwarded-For", xff),
            ],
            b"username=admin&password=nope",
        )
        .unwrap()
        .status
    };
    // Through the trusted proxy (127.0.0.1), each forwarded client has its
    // own budget.
    assert_eq!(login_from("203.0.113.1"), 401);
    assert_eq!(login_from("203.0.113.1"), 401);
    assert_eq!(login_from("203.0.113.1"), 429);
    assert_eq!(
        login_from("203.0.113.2"),
        401,
        "another client is not locked"
    );
    // From an untrusted peer (127.0.0.2) the header is ignored: rotating it
    // does not buy more attempts.
    let from = |xff: &str| {
        raw(
            srv.addr,
            Some("127.0.0.2"),
            &format!(
                "POST /login HTTP/1.1\r\nHost: {}\r\nX-Forwarded-For: {xff}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 28\r\nConnection: close\r\n\r\nusername=admin&password=nope",
                srv.addr
            ),
        )
    };
    assert!(from("198.51.100.1").starts_with("HTTP/1.1 401"));
    assert!(from("198.51.100.2").starts_with("HTTP/1.1 401"));
    assert!(from("198.51.100.3").starts_with("HTTP/1.1 429"));
}

/// Sends raw bytes from `bind_ip` (a 127.0.0.x address) and reads the answer.
fn raw(addr: SocketAddr, bind_ip: Option<&str>, req: &str) -> String {
    let mut s = match bind_ip {
        Some(ip) => connect_from(ip, addr).unwrap(),
        None => TcpStream::connect(addr).unwrap(),
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A connection from a chosen loopback address, so tests can be
/// "another client" (std cannot bind before connecting).
fn connect_from(ip: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: SocketAddr = format!("{ip}:0").parse().unwrap();
    sock.bind(&local.into())?;
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    Ok(sock.into())
}

#[test]
fn cross_origin_posts_and_foreign_hosts_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let srv = start(&work, "");
    let cookie = srv.setup_admin();
    let form = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    // A foreign page posting with the user's cookie.
    let mut h = form.to_vec();
    h.push(("Origin", "http://evil.example"));
    let r = srv
        .request("POST", "/settings/tokens", &h, b"name=stolen")
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("cross-site"));
    let mut h = form.to_vec();
    h.push(("Referer", "http://evil.example/page"));
    assert_eq!(
        srv.request("POST", "/settings/tokens", &h, b"name=x")
            .unwrap()
            .status,
        403
    );
    // No Origin and no Referer with a cookie: refused too.
    assert_eq!(
        srv.request("POST", "/settings/tokens", &form, b"name=x")
            .unwrap()
            .status,
        403
    );
    // Login CSRF.
    let r = srv
        .request(
            "POST",
            "/login",
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"username=admin&password=x",
        )
        .unwrap();
    assert_eq!(r.status, 403);
    // Our own page: accepted.
    let base = srv.base();
    let mut h = form.to_vec();
    h.push(("Origin", &base));
    let r = srv
        .request("POST", "/settings/tokens", &h, b"name=mine")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("rt_"));
    // API tokens are not ambient credentials: no Origin needed.
    let token = srv.api_token(&cookie);
    let r = srv
        .request(
            "POST",
            "/api/v1/tokens",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            br#"{"name":"script"}"#,
        )
        .unwrap();
    assert_eq!(r.status, 201);

    // DNS rebinding: a name that is not ours.
    let r = raw(
        srv.addr,
        None,
        "GET /login HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 421"), "{r}");
    assert!(r.contains("allowed_hosts"));
    let r = raw(
        srv.addr,
        None,
        "GET /login HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 4"), "no Host: {r}");
    let r = raw(
        srv.addr,
        None,
        &format!(
            "GET /login HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            srv.addr.port()
        ),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn slowloris_cannot_exhaust_connections() {
    let work = tempfile::tempdir().unwrap();
    let srv = start(
        &work,
        "[http]\nmax_connections = 64\nmax_connections_per_ip = 16\nheader_timeout_secs = 2\n",
    );
    // 40 connections from one address, each sending half a request line.
    let mut slow: Vec<TcpStream> = Vec::new();
    for _ in 0..40 {
        if let Ok(s) = connect_from("127.0.0.3", srv.addr) {
            let mut s = s;
            let _ = s.write_all(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
            slow.push(s);
        }
    }
    // Everyone else is still served at once.
    for _ in 0..5 {
        let t = Instant::now();
        let r = srv.get("/login", &[]).unwrap();
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    // Past the per-address limit, connections are closed at once…
    let mut open = Vec::new();
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 256];
        match s.read(&mut b) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                open.push(s)
            }
            _ => {}
        }
    }
    assert!(open.len() <= 16, "{} slow connections held", open.len());
    // …and the others are cut by the header timeout (2 s).
    let started = Instant::now();
    for s in &mut open {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 256];
        let _ = s.read(&mut b);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slow connections were not cut: {:?}",
        started.elapsed()
    );
    // And the slots are free again.
    let r = raw(
        srv.addr,
        Some("127.0.0.3"),
        &format!(
            "GET /login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            srv.addr
        ),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn oversize_and_slow_bodies_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let srv = start(
        &work,
        "[http]\nbody_timeout_secs = 2\nmax_torrent_bytes = 1048576\n",
    );
    let cookie = srv.setup_admin();
    let token = srv.api_token(&cookie);
    let auth = format!("Authorization: Bearer {token}");
    // Declared too large: refused before the body is read.
    let r = raw(
        srv.addr,
        None,
        &format!(
            "POST /api/v1/torrents HTTP/1.1\r\nHost: {}\r\n{auth}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n",
            srv.addr
        ),
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(r.contains("\"error\""));
    // Chunked (no length) and too large: cut off at the limit.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /api/v1/torrents HTTP/1.1\r\nHost: {}\r\n{auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        srv.addr
    )
    .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..64 {
        if write!(s, "{:x}\r\n", chunk.len()).is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    // A form on the pages: same limit for the general body size.
    let big = vec![b'x'; 200 * 1024];
    let r = srv
        .request(
            "POST",
            "/settings/tokens",
            &[
                ("Cookie", &cookie),
                ("Origin", &srv.base()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &big,
        )
        .unwrap();
    assert_eq!(r.status, 413);
    // A body that trickles in slower than the body timeout.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /api/v1/tokens HTTP/1.1\r\nHost: {}\r\n{auth}\r\nContent-Type: application/json\r\nContent-Length: 50\r\nConnection: close\r\n\r\n{{\"na",
        srv.addr
    )
    .unwrap();
    let t = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(6));
    assert!(!srv.log().contains("panicked"));
}
