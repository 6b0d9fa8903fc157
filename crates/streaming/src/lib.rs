//! Serving media over HTTP: byte ranges (RFC 9110), signed stream URLs for
//! players that cannot send cookies, and a sniffer that finds a container's
//! index (MP4 `moov`, MKV Cues) so it can be fetched first.
//!
//! Nothing here knows about torrents: [`range::respond`] serves any
//! `AsyncRead + AsyncSeek` of known length, so finished library files and
//! in-progress torrent streams share one implementation.

pub mod container;
pub mod decision;
pub mod hls;
pub mod mime;
pub mod pretranscode;
pub mod profiles;
pub mod range;
pub mod token;
