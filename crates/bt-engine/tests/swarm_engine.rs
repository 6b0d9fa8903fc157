//! Session API against a real libtorrent seeder: pause, resume, remove,
//! stats. (Named `swarm_*`: nextest's real-peers group.)

use bt_engine::{AddTorrent, Session, SessionConfig, TorrentSource, TorrentStatus};
use bt_proto::metainfo::Metainfo;
use std::time::Duration;
use test_swarm::*;

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_pause_resume_remove_and_stats() {
    require_or_skip!("opentracker", "mktorrent", LIBTORRENT);
    let work = Workdir::new("engine-pause");
    let payload = make_payload(&work.subdir("seed"), "paused.bin", &[12 << 20], 4);
    let tracker = Tracker::start(&work, &[]);
    let torrent = make_torrent(&payload, &tracker.announce_url(), 64 * 1024);
    tracker.allow(&torrent.info_hash_hex);
    let opts = SeedOpts {
        upload_limit_bps: Some(3_000_000),
        ..SeedOpts::default()
    };
    let _seed = LibtorrentPeer::seed(&work, &torrent, &payload.root, loopback_ip(51), opts);

    let out = work.subdir("out");
    let session = Session::start(SessionConfig {
        bind_ip: loopback_ip(8).into(),
        resume_dir: Some(out.join(".riptide")),
        ..SessionConfig::default()
    })
    .await
    .unwrap();
    let meta = Metainfo::from_bytes(&std::fs::read(&torrent.path).unwrap()).unwrap();
    let total = meta.info.total_length();
    let h = session
        .add_torrent(AddTorrent {
            source: TorrentSource::Metainfo(Box::new(meta)),
            download_dir: out.clone(),
            peers: vec![],
            paused: false,
        })
        .await
        .unwrap();

    wait_until("some progress", || h.stats().verified_bytes > 1 << 20).await;
    let s = h.stats();
    assert_eq!(s.status, TorrentStatus::Downloading);
    assert_eq!(s.total_bytes, total);
    assert!(s.peers >= 1 && s.seeds >= 1, "{s:?}");
    assert!(s.download_rate > 0 && s.eta.is_some(), "{s:?}");
    assert!(session.stats().download_rate > 0);
    assert_eq!(h.peers().len(), s.peers);

    h.pause();
    wait_until("peers to disconnect", || h.stats().peers == 0).await;
    assert_eq!(h.stats().status, TorrentStatus::Paused);
    // Let in-flight piece checks land, then nothing may move.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = h.stats().verified_bytes;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.stats().verified_bytes,
        frozen,
        "a paused torrent downloaded"
    );
    assert!(frozen < total);

    h.resume();
    tokio::time::timeout(Duration::from_secs(60), h.wait_complete())
        .await
        .expect("completes after resume")
        .unwrap();
    assert_eq!(h.stats().status, TorrentStatus::Seeding);
    payload.assert_downloaded_to(&out);

    let ih = h.info_hash();
    session.remove_torrent(&ih, true).await.unwrap();
    assert!(session.torrent(&ih).is_none());
    assert!(
        !out.join("paused.bin").exists(),
        "remove with data deletes the files"
    );
    session.shutdown().await;
}
