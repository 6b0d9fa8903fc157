//! Issue 5: a film `riptide serve` finished downloading is imported into
//! `library/{id}/` and seeding continues from there. The original seeder
//! then leaves, and an aria2c leecher that can only get the film from
//! riptide downloads it whole. Named `swarm_*` for nextest's real-peers
//! group.

mod server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use test_swarm::torrent::url_encode;
use test_swarm::*;

fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(find(&p, name));
        } else if e.file_name().to_string_lossy() == name {
            found.push(p);
        }
    }
    found
}

#[test]
fn swarm_imported_film_keeps_seeding() {
    require_or_skip!("opentracker", "mktorrent", "aria2c", LIBTORRENT);
    let work = Workdir::new("rt-import-seed");
    let payload = make_payload(
        &work.subdir("seed"),
        "Import Seed Film (2024).mkv",
        &[3 << 20],
        41,
    );
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let seed = LibtorrentPeer::seed(
        &work,
        &torrent,
        &payload.root,
        loopback_ip(81),
        SeedOpts::default(),
    );
    let peer_port = free_port(loopback_ip(16)).to_string();
    let data = work.subdir("data");
    let srv = server::Server::start(
        &data,
        &work.logs_dir(),
        &[
            ("RIPTIDE_PEER_BIND", "127.0.0.16"),
            ("RIPTIDE_PEER_PORT", &peer_port),
        ],
    );
    let cookie = srv.setup_admin();
    let token = srv.api_token(&cookie);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr={}&x.pe={}",
        torrent.info_hash_hex,
        url_encode(tracker.announce_url().as_bytes()),
        seed.listen_addr()
    );
    srv.add_magnet(&token, &magnet);

    // Downloaded, imported, seeding again from the library.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = srv.api_get("/api/v1/torrents", &token);
        let t = &list.as_array().unwrap()[0];
        let state = t.get("state").and_then(|s| s.as_str()).unwrap_or("");
        let imported = t.get("imported").and_then(|s| s.as_bool()) == Some(true);
        assert_ne!(state, "error", "{t:?}\n{}", srv.log());
        if imported && state == "seeding" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not imported and seeding: {t:?}\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let copies = find(&data, &payload.name);
    assert_eq!(copies.len(), 1, "one copy of the film: {copies:?}");
    assert!(
        copies[0].components().any(|c| c.as_os_str() == "library"),
        "the film is in the library: {}",
        copies[0].display()
    );

    // Only riptide has the film now.
    drop(seed);
    let out = work.subdir("aria-out");
    let mut aria = Aria2Peer::leech(&work, &torrent, &out, loopback_ip(82), 0);
    aria.wait_complete(Duration::from_secs(120))
        .unwrap_or_else(|e| {
            work.dump_logs();
            panic!("aria2c: {e}\n{}", srv.log())
        });
    payload.assert_downloaded_to(&out);
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
}
