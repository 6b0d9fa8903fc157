//! Sans-IO BitTorrent protocol codecs.
//!
//! Nothing in this crate touches a socket, a file or a clock: every function
//! takes bytes and returns values (or the reverse), so the whole crate can be
//! fuzzed and property-tested in isolation. Every decoder of untrusted bytes
//! enforces explicit size and depth limits and returns a typed error instead
//! of panicking.

pub mod bencode;
pub mod bitfield;
pub mod extension;
pub mod lsd;
pub mod magnet;
pub mod merkle;
pub mod metadata;
pub mod metainfo;
pub mod mse;
pub mod pex;
pub mod tracker;
pub mod wire;
pub mod wire_v2;

mod ids;
mod percent;

pub use bitfield::{Bitfield, BitfieldError};
pub use ids::{InfoHash, InfoHashV2, ParseInfoHashError, PeerId};
pub use magnet::{Magnet, MagnetError};
pub use metainfo::{FileEntry, Info, Metainfo, MetainfoError};
