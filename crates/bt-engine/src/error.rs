//! Errors the engine reports to its user.

use bt_proto::InfoHash;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "could not listen for peers on {addr}: {source} (is the port in use? pick another with --port)"
    )]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid torrent: {0}")]
    Metainfo(#[from] bt_proto::metainfo::MetainfoError),
    #[error("invalid magnet link: {0}")]
    Magnet(#[from] bt_proto::magnet::MagnetError),
    #[error("{0}")]
    Store(#[from] piece_store::StoreError),
    #[error("torrent {0} is already in the session")]
    Duplicate(InfoHash),
    #[error("torrent {0} is not in the session")]
    NotFound(InfoHash),
    #[error("the session is shutting down")]
    ShuttingDown,
    #[error("the torrent stopped: {0}")]
    Torrent(String),
    #[error("the torrent has no file number {0}")]
    NoSuchFile(usize),
}
