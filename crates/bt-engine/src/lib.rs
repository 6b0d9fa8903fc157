//! BitTorrent engine.
