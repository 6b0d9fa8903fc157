//! Bad input in every form (empty, huge, non-UTF-8, malformed magnets and
//! torrents, wrong content types) gets a clear message on the page or in
//! the JSON, and loses nothing: what was added before stays, also across a
//! restart. And the CLI client (`riptide add|ls|pause|resume|rm`) against a
//! running server, with its token from riptide.toml.

mod server;

use server::Server;
use std::process::Command;

/// A valid single-file .torrent (no trackers), made by hand.
fn torrent(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"d4:infod6:lengthi5e4:name");
    v.extend_from_slice(format!("{}:{name}", name.len()).as_bytes());
    v.extend_from_slice(b"12:piece lengthi16384e6:pieces20:");
    v.extend_from_slice(&[7u8; 20]);
    v.extend_from_slice(b"ee");
    v
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----riptideTestBoundary7MA4YWxk";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/x-bittorrent\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

struct Browser<'a> {
    srv: &'a Server,
    cookie: String,
}

impl Browser<'_> {
    fn add(&self, parts: &[(&str, Option<&str>, &[u8])]) -> test_swarm::http::Response {
        let (ctype, body) = multipart(parts);
        let origin = self.srv.base();
        self.srv
            .request(
                "POST",
                "/downloads/add",
                &[
                    ("Cookie", &self.cookie),
                    ("Origin", &origin),
                    ("Content-Type", &ctype),
                ],
                &body,
            )
            .unwrap()
    }

    fn page(&self, path: &str) -> test_swarm::http::Response {
        self.srv.get(path, &[("Cookie", &self.cookie)]).unwrap()
    }
}

/// The page's error paragraph.
fn error_of(html: &str) -> String {
    html.split("class=\"error\"")
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn bad_input_gets_clear_messages_and_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("riptide.toml"),
        "[http]\nmax_torrent_bytes = 65536\n[engine]\nbind = \"127.0.0.21\"\n",
    )
    .unwrap();
    let srv = Server::start(&data, &work.path().join("logs"), &[]);
    let b = Browser {
        cookie: srv.setup_admin(),
        srv: &srv,
    };
    // Something added first, which nothing below may lose.
    let good = torrent("keep-me.bin");
    let r = b.add(&[
        ("magnet", None, b""),
        ("torrent", Some("keep.torrent"), &good),
    ]);
    assert_eq!(r.status, 303, "{}", r.text());

    let huge_magnet = format!(
        "magnet:?xt=urn:btih:{}&dn={}",
        "a".repeat(40),
        "x".repeat(100_000)
    );
    let huger = format!(
        "magnet:?xt=urn:btih:{}&dn={}",
        "a".repeat(40),
        "x".repeat(300_000)
    );
    let mut traversal = Vec::new();
    traversal.extend_from_slice(b"d4:infod5:filesld6:lengthi5e4:pathl2:..6:escapeee4:name1:d12:piece lengthi16384e6:pieces20:");
    traversal.extend_from_slice(&[1u8; 20]);
    traversal.extend_from_slice(b"ee");
    // (what, form parts (name, file name, bytes), status, message)
    type Part = (&'static str, Option<&'static str>, Vec<u8>);
    let cases: Vec<(&str, Vec<Part>, u16, &str)> = vec![
        (
            "empty form",
            vec![("magnet", None, b"".to_vec())],
            400,
            "nothing to add",
        ),
        (
            "only spaces",
            vec![("magnet", None, b"   \n ".to_vec())],
            400,
            "nothing to add",
        ),
        (
            "not a magnet",
            vec![("magnet", None, b"http://example.invalid/x.torrent".to_vec())],
            400,
            "not a magnet link",
        ),
        (
            "bad hash",
            vec![("magnet", None, b"magnet:?xt=urn:btih:xyz".to_vec())],
            400,
            "invalid magnet link",
        ),
        (
            "no hash",
            vec![("magnet", None, b"magnet:?dn=film".to_vec())],
            400,
            "invalid magnet link",
        ),
        (
            "v2-only garbage",
            vec![("magnet", None, b"magnet:?xt=urn:btmh:1220zz".to_vec())],
            400,
            "invalid magnet link",
        ),
        (
            "huge magnet",
            vec![("magnet", None, huge_magnet.into_bytes())],
            400,
            "invalid magnet link",
        ),
        (
            "larger than any form",
            vec![("magnet", None, huger.into_bytes())],
            413,
            "never that large",
        ),
        (
            "non-UTF-8 magnet",
            vec![("magnet", None, b"magnet:?xt=urn:btih:\xff\xfe".to_vec())],
            400,
            "not text (UTF-8)",
        ),
        (
            "garbage torrent",
            vec![(
                "torrent",
                Some("x.torrent"),
                b"\x00\x01 definitely not bencode".to_vec(),
            )],
            400,
            "not a valid .torrent",
        ),
        (
            "truncated torrent",
            vec![(
                "torrent",
                Some("x.torrent"),
                good[..good.len() - 10].to_vec(),
            )],
            400,
            "not a valid .torrent",
        ),
        (
            "non-UTF-8 bytes torrent",
            vec![("torrent", Some("x.torrent"), b"d4:info\xff\xff".to_vec())],
            400,
            "not a valid .torrent",
        ),
        (
            "path traversal",
            vec![("torrent", Some("x.torrent"), traversal)],
            400,
            "not a valid .torrent",
        ),
        (
            "oversize torrent",
            vec![("torrent", Some("big.torrent"), vec![b'd'; 70_000])],
            413,
            "never that large",
        ),
        (
            "both",
            vec![
                (
                    "magnet",
                    None,
                    format!("magnet:?xt=urn:btih:{}", "c".repeat(40)).into_bytes(),
                ),
                ("torrent", Some("t.torrent"), torrent("other.bin")),
            ],
            400,
            "not both",
        ),
        (
            "the same again",
            vec![("torrent", Some("keep.torrent"), good.clone())],
            409,
            "already in the list",
        ),
    ];
    for (what, parts, status, message) in &cases {
        let parts: Vec<(&str, Option<&str>, &[u8])> = parts
            .iter()
            .map(|(n, f, d)| (*n, *f, d.as_slice()))
            .collect();
        let r = b.add(&parts);
        let html = r.text();
        assert_eq!(r.status, *status, "{what}: {html}");
        let err = error_of(&html);
        assert!(
            err.contains(message),
            "{what}: error {err:?} lacks {message:?}"
        );
        assert!(
            err.len() < 400,
            "{what}: the message echoes the input: {err}"
        );
        if *status != 413 {
            assert!(
                html.contains("keep-me.bin"),
                "{what}: the list lost the earlier torrent"
            );
        }
    }
    // What the user typed is kept (small inputs), the huge paste is not.
    let r = b.add(&[("magnet", None, b"magnet:?xt=urn:btih:xyz")]);
    assert!(r.text().contains(">magnet:?xt=urn:btih:xyz</textarea>"));
    // A form that is not multipart, and a broken multipart body.
    let r = srv
        .request(
            "POST",
            "/downloads/add",
            &[
                ("Cookie", &b.cookie),
                ("Origin", &srv.base()),
                ("Content-Type", "text/plain"),
            ],
            b"magnet=x",
        )
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(error_of(&r.text()).contains("reload the page"));
    let r = srv
        .request(
            "POST",
            "/downloads/add",
            &[
                ("Cookie", &b.cookie),
                ("Origin", &srv.base()),
                ("Content-Type", "multipart/form-data; boundary=zz"),
            ],
            b"--zz\r\nContent-Disposition: form-data; name=\"magnet\"\r\n\r\nabc",
        )
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());

    // The JSON API: every error is JSON with a message.
    let token = srv.api_token(&b.cookie);
    let auth = format!("Bearer {token}");
    let api = |ctype: &str, body: &[u8]| {
        srv.request(
            "POST",
            "/api/v1/torrents",
            &[("Authorization", &auth), ("Content-Type", ctype)],
            body,
        )
        .unwrap()
    };
    for (ctype, body, status, message) in [
        ("application/json", &b""[..], 400, "invalid JSON"),
        ("application/json", b"{", 400, "invalid JSON"),
        ("application/json", b"\xff\xfe", 400, "invalid JSON"),
        ("text/plain", b"{}", 415, "invalid JSON"),
        (
            "application/json",
            b"{}",
            400,
            "give `magnet` or `torrent_base64`",
        ),
        ("application/json", b"{\"magnet\": 5}", 422, "invalid JSON"),
        (
            "application/json",
            b"{\"magnet\": \"x\", \"evil\": 1}",
            422,
            "unknown field",
        ),
        (
            "application/json",
            b"{\"magnet\": \"magnet:?xt=urn:btih:q\"}",
            400,
            "invalid magnet link",
        ),
        (
            "application/json",
            b"{\"torrent_base64\": \"***\"}",
            400,
            "not valid base64",
        ),
        (
            "application/json",
            b"{\"torrent_base64\": \"AAAA\"}",
            400,
            "not a valid .torrent",
        ),
    ] {
        let r = api(ctype, body);
        assert_eq!(
            r.status,
            status,
            "{ctype} {:?}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = test_swarm::json::parse(&r.text()).unwrap();
        let msg = j.get("error").and_then(|e| e.as_str()).unwrap_or("");
        assert!(msg.contains(message), "{msg:?} lacks {message:?}");
    }
    // Odd queries and ids on the pages.
    for p in [
        "/?q=%FF%FE",
        "/?q=%",
        &format!("/?q={}", "a".repeat(300)),
        "/film/abc",
        "/film/-1",
        "/film/99999999999999999999",
        "/play/0",
    ] {
        let r = b.page(p);
        assert!(r.status < 500, "{p}: {}", r.status);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{p}"
        );
    }
    // Nothing was lost, also across a restart.
    let list = b.page("/api/v1/torrents");
    assert!(list.text().contains("keep-me.bin"));
    assert_eq!(
        list.text().matches("\"info_hash\"").count(),
        1,
        "{}",
        list.text()
    );
    drop(srv);
    let srv = Server::start(&data, &work.path().join("logs2"), &[]);
    let r = srv
        .get("/api/v1/torrents", &[("Authorization", &auth)])
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("keep-me.bin"), "{}", r.text());
    assert!(!srv.log().contains("panicked"));
}

fn cli(data: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("RIPTIDE_TOKEN")
        .env_remove("RIPTIDE_SERVER")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn cli_client_talks_to_the_server() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("riptide.toml"),
        "[engine]\nbind = \"127.0.0.22\"\n",
    )
    .unwrap();
    let srv = Server::start(&data, &work.path().join("logs"), &[]);
    // No token yet: a clear message.
    let (ok, out) = cli(&data, &["ls", "--server", &srv.base()]);
    assert!(!ok && out.contains("no API token"), "{out}");
    let token = srv.api_token(&srv.setup_admin());
    std::fs::write(
        data.join("riptide.toml"),
        format!(
            "[engine]\nbind = \"127.0.0.22\"\n[client]\nserver = \"{}\"\ntoken = \"{token}\"\n",
            srv.base()
        ),
    )
    .unwrap();
    let (ok, out) = cli(&data, &["ls"]);
    assert!(ok && out.contains("no torrents"), "{out}");
    let file = work.path().join("film.torrent");
    std::fs::write(&file, torrent("cli-film.bin")).unwrap();
    let (ok, out) = cli(&data, &["add", file.to_str().unwrap()]);
    assert!(
        ok && out.contains("added") && out.contains("cli-film.bin"),
        "{out}"
    );
    let ih = out.split_whitespace().nth(1).unwrap().to_string();
    let (ok, out) = cli(
        &data,
        &[
            "add",
            &format!("magnet:?xt=urn:btih:{}&dn=cli-magnet", "d".repeat(40)),
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&data, &["ls"]);
    assert!(
        ok && out.contains("cli-film.bin") && out.contains("cli-magnet"),
        "{out}"
    );
    let (ok, out) = cli(&data, &["pause", &ih[..10]]);
    assert!(ok && out.contains("paused"), "{out}");
    let (ok, out) = cli(&data, &["ls", "--json"]);
    assert!(ok && out.contains("\"paused\""), "{out}");
    let (ok, out) = cli(&data, &["resume", &ih]);
    assert!(ok && out.contains("resumed"), "{out}");
    let (ok, out) = cli(&data, &["rm", &ih, "--delete-data"]);
    assert!(ok && out.contains("removed"), "{out}");
    let (ok, out) = cli(&data, &["ls"]);
    assert!(ok && !out.contains("cli-film.bin"), "{out}");
    // Errors say what to do.
    let (ok, out) = cli(&data, &["pause", "ffff"]);
    assert!(!ok && out.contains("riptide ls"), "{out}");
    let (ok, out) = cli(&data, &["add", "magnet:?xt=urn:btih:nope"]);
    assert!(!ok && out.contains("invalid magnet link"), "{out}");
    let (ok, out) = cli(&data, &["ls", "--token", "rt_wrong"]);
    assert!(!ok && out.contains("unknown or revoked API token"), "{out}");
    let (ok, out) = cli(&data, &["ls", "--server", "http://127.0.0.1:1"]);
    assert!(!ok && out.contains("cannot reach the server"), "{out}");
}
