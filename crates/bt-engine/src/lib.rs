//! BitTorrent engine.
pub mod picker;
