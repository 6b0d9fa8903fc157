//! Turning a command-line argument into a torrent: a magnet link or a path
//! to a .torrent file.

use anyhow::{Context, bail};
use bt_engine::TorrentSource;
use bt_proto::magnet::Magnet;
use bt_proto::metainfo::Metainfo;
use std::path::Path;

/// Refuse .torrent files larger than this before reading them whole.
const MAX_TORRENT_FILE: u64 = 64 * 1024 * 1024;

pub fn parse(arg: &str) -> anyhow::Result<TorrentSource> {
    if arg.starts_with("magnet:") {
        let m = Magnet::parse(arg).context("invalid magnet link")?;
        return Ok(TorrentSource::Magnet(m));
    }
    let m = read_torrent_file(Path::new(arg))?;
    Ok(TorrentSource::Metainfo(Box::new(m)))
}

pub fn read_torrent_file(path: &Path) -> anyhow::Result<Metainfo> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        bail!("{} is a directory, not a .torrent file", path.display());
    }
    if meta.len() > MAX_TORRENT_FILE {
        bail!(
            "{} is {} bytes; torrent files are never that large",
            path.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let m = Metainfo::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid torrent", path.display()))?;
    // Hostile or inconsistent file lists are refused here too, so `info`
    // and `download` agree on what is acceptable.
    piece_store::Layout::from_info(&m.info)
        .with_context(|| format!("{} is not a usable torrent", path.display()))?;
    Ok(m)
}
