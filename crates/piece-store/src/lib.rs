//! Torrent pieces on disk.
