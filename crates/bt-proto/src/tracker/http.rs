//! HTTP(S) tracker protocol: announce URLs (BEP 3), bencoded responses with
//! compact (BEP 23), dictionary and IPv6 (BEP 7) peers, and scrape.
//!
//! The server-side half ([`parse_announce_query`],
//! [`encode_announce_response`]) exists for the in-process mock tracker in
//! our tests, and keeps both halves honest against each other.

pub use super::ScrapeStats;
use super::{
    AnnounceRequest, AnnounceResponse, Event, TrackerError, decode_compact_v4, decode_compact_v6,
    encode_compact,
};
use crate::bencode::{self, Limits, Value};
use crate::{InfoHash, PeerId, percent};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// A response with thousands of peers is a few tens of KiB; scrapes of many
/// torrents are bigger, hence the generous input limit.
const LIMITS: Limits = Limits {
    max_depth: 8,
    max_input: 8 * 1024 * 1024,
    max_items: 1_000_000,
};

/// Interval to assume when a tracker omits it (libtorrent does the same).
pub const DEFAULT_INTERVAL: u32 = 1800;

/// The full announce URL for `req`. Keeps any query the tracker URL already
/// has (private trackers put passkeys there) and asks for compact peers.
pub fn announce_url(base: &str, req: &AnnounceRequest) -> String {
    let mut url = String::with_capacity(base.len() + 256);
    url.push_str(base);
    push_separator(&mut url);
    url.push_str("info_hash=");
    percent::encode_into(&req.info_hash.0, &mut url);
    url.push_str("&peer_id=");
    percent::encode_into(&req.peer_id.0, &mut url);
    let _ = write!(
        url,
        "&port={}&uploaded={}&downloaded={}&left={}&corrupt=0&key={:08X}&compact=1",
        req.port, req.uploaded, req.downloaded, req.left, req.key
    );
    if let Some(e) = req.event {
        let _ = write!(url, "&event={}", e.as_str());
    }
    if let Some(n) = req.numwant {
        let _ = write!(url, "&numwant={n}");
    }
    if let Some(id) = &req.tracker_id {
        url.push_str("&trackerid=");
        percent::encode_into(id.as_bytes(), &mut url);
    }
    url
}

fn push_separator(url: &mut String) {
    if url.ends_with('?') || url.ends_with('&') {
        return;
    }
    url.push(if url.contains('?') { '&' } else { '?' });
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Integer field clamped into `u32`: trackers send negative and huge
/// counts, which are noise rather than reasons to drop the response.
fn count(v: Option<&Value>) -> Option<u32> {
    v.and_then(Value::as_int)
        .map(|i| i.clamp(0, i64::from(u32::MAX)) as u32)
}

fn decode_dict(body: &[u8]) -> Result<Value, TrackerError> {
    let v = bencode::decode_with(body, &LIMITS)?;
    if v.as_dict().is_none() {
        return Err(TrackerError::NotADict);
    }
    if let Some(reason) = text(v.get(b"failure reason")) {
        return Err(TrackerError::Failure(reason));
    }
    Ok(v)
}

pub fn parse_announce_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let v = decode_dict(body)?;
    let mut peers = match v.get(b"peers") {
        Some(Value::Bytes(b)) => decode_compact_v4(b),
        Some(Value::List(l)) => l.iter().filter_map(dict_peer).collect(),
        _ => Vec::new(),
    };
    if let Some(b) = v.get(b"peers6").and_then(Value::as_bytes) {
        peers.extend(decode_compact_v6(b));
    }
    Ok(AnnounceResponse {
        interval: count(v.get(b"interval")).unwrap_or(DEFAULT_INTERVAL),
        min_interval: count(v.get(b"min interval")),
        tracker_id: text(v.get(b"tracker id")),
        complete: count(v.get(b"complete")),
        incomplete: count(v.get(b"incomplete")),
        peers,
        warning: text(v.get(b"warning message")),
    })
}

/// A non-compact peer: `{ip, port[, peer id]}`. Hostnames are skipped:
/// resolving them is I/O and no tracker in use sends them.
fn dict_peer(v: &Value) -> Option<SocketAddr> {
    let ip: IpAddr = v.get(b"ip")?.as_str()?.trim().parse().ok()?;
    let port = u16::try_from(v.get(b"port")?.as_int()?).ok()?;
    // Same rule as compact peers6: a v4-mapped address is the IPv4 peer.
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// The scrape URL for a tracker, by the convention in BEP 48: only when the
/// last path segment starts with `announce`, which becomes `scrape`.
pub fn scrape_url(announce: &str, hashes: &[InfoHash]) -> Option<String> {
    let (path, query) = match announce.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (announce, None),
    };
    let slash = path.rfind('/')?;
    // "http://host" has no path at all: the slash found is the scheme's.
    if path[..slash].ends_with('/') || !path.contains("://") {
        return None;
    }
    let last = &path[slash + 1..];
    let rest = last.strip_prefix("announce")?;
    let mut url = format!("{}/scrape{rest}", &path[..slash]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    for h in hashes {
        push_separator(&mut url);
        url.push_str("info_hash=");
        percent::encode_into(&h.0, &mut url);
    }
    Some(url)
}

pub fn parse_scrape_response(body: &[u8]) -> Result<HashMap<InfoHash, ScrapeStats>, TrackerError> {
    let v = decode_dict(body)?;
    let files = v
        .get(b"files")
        .and_then(Value::as_dict)
        .ok_or(TrackerError::Missing("files"))?;
    Ok(files
        .iter()
        .filter_map(|(k, stats)| {
            let hash = InfoHash(k.as_slice().try_into().ok()?);
            stats.as_dict()?;
            Some((
                hash,
                ScrapeStats {
                    complete: count(stats.get(b"complete")).unwrap_or(0),
                    downloaded: count(stats.get(b"downloaded")).unwrap_or(0),
                    incomplete: count(stats.get(b"incomplete")).unwrap_or(0),
                },
            ))
        })
        .collect())
}

/// Parses the query string of an announce (with or without the leading
/// `?`), as a tracker would.
pub fn parse_announce_query(query: &str) -> Result<AnnounceRequest, TrackerError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut params: HashMap<&str, Vec<u8>> = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(k, percent::decode(v, true));
    }
    fn id20(params: &HashMap<&str, Vec<u8>>, key: &'static str) -> Result<[u8; 20], TrackerError> {
        params
            .get(key)
            .and_then(|v| v.as_slice().try_into().ok())
            .ok_or(TrackerError::BadQuery(key))
    }
    fn num<T: std::str::FromStr>(
        params: &HashMap<&str, Vec<u8>>,
        key: &'static str,
    ) -> Result<Option<T>, TrackerError> {
        params
            .get(key)
            .map(|v| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(TrackerError::BadQuery(key))
            })
            .transpose()
    }
    let event = match params.get("event").map(Vec::as_slice) {
        Some(b"started") => Some(Event::Started),
        Some(b"completed") => Some(Event::Completed),
        Some(b"stopped") => Some(Event::Stopped),
        _ => None,
    };
    let key = params
        .get("key")
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| u32::from_str_radix(k, 16).ok())
        .unwrap_or(0);
    Ok(AnnounceRequest {
        info_hash: InfoHash(id20(&params, "info_hash")?),
        peer_id: PeerId(id20(&params, "peer_id")?),
        port: num(&params, "port")?.ok_or(TrackerError::BadQuery("port"))?,
        uploaded: num(&params, "uploaded")?.unwrap_or(0),
        downloaded: num(&params, "downloaded")?.unwrap_or(0),
        left: num(&params, "left")?.unwrap_or(0),
        event,
        numwant: num(&params, "numwant")?,
        key,
        tracker_id: params
            .get("trackerid")
            .map(|t| String::from_utf8_lossy(t).into_owned()),
    })
}

/// A compact announce response, IPv6 peers in `peers6`.
pub fn encode_announce_response(resp: &AnnounceResponse) -> Vec<u8> {
    let mut d = Value::dict();
    d.insert("interval", i64::from(resp.interval));
    if let Some(m) = resp.min_interval {
        d.insert("min interval", i64::from(m));
    }
    if let Some(t) = &resp.tracker_id {
        d.insert("tracker id", t.as_str());
    }
    if let Some(c) = resp.complete {
        d.insert("complete", i64::from(c));
    }
    if let Some(i) = resp.incomplete {
        d.insert("incomplete", i64::from(i));
    }
    let (v4, v6) = encode_compact(&resp.peers);
    d.insert("peers", v4);
    if !v6.is_empty() {
        d.insert("peers6", v6);
    }
    if let Some(w) = &resp.warning {
        d.insert("warning message", w.as_str());
    }
    bencode::encode(&d)
}

/// A `failure reason` response.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut d = Value::dict();
    d.insert("failure reason", reason);
    bencode::encode(&d)
}

pub fn encode_scrape_response(stats: &HashMap<InfoHash, ScrapeStats>) -> Vec<u8> {
    let files: BTreeMap<Vec<u8>, Value> = stats
        .iter()
        .map(|(h, s)| {
            let mut e = Value::dict();
            e.insert("complete", i64::from(s.complete));
            e.insert("downloaded", i64::from(s.downloaded));
            e.insert("incomplete", i64::from(s.incomplete));
            (h.0.to_vec(), e)
        })
        .collect();
    let mut d = Value::dict();
    d.insert("files", Value::Dict(files));
    bencode::encode(&d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::tests::arb_peer;
    use proptest::prelude::*;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash(*b"\x12\x34\x56\x78\x9a\xbc\xde\xf1\x23\x45\x67\x89\xab\xcd\xef\x12\x34\x56\x78\x9a"),
            peer_id: PeerId(*b"-RT0001-abc def/ghij"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Some(Event::Started),
            numwant: Some(50),
            key: 0xdead_beef,
            tracker_id: None,
        }
    }

    #[test]
    fn announce_url_shapes() {
        let u = announce_url("http://127.0.0.1:6969/announce", &req());
        assert_eq!(
            u,
            "http://127.0.0.1:6969/announce?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A\
             &peer_id=-RT0001-abc%20def%2Fghij&port=6881&uploaded=1&downloaded=2&left=3&corrupt=0\
             &key=DEADBEEF&compact=1&event=started&numwant=50"
        );
        let u = announce_url("http://t/announce.php?passkey=abc", &req());
        assert!(u.starts_with("http://t/announce.php?passkey=abc&info_hash="));
        let u = announce_url("http://t/a?", &req());
        assert!(u.starts_with("http://t/a?info_hash="));
        let query = u.split_once('?').unwrap().1;
        assert_eq!(parse_announce_query(query).unwrap(), req());
    }

    #[test]
    fn compact_dict_and_v6_peers() {
        let mut body =
            b"d8:completei5e10:incompletei3e8:intervali1800e12:min intervali60e5:peers12:".to_vec();
        body.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 80]);
        body.extend_from_slice(b"6:peers618:");
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 81]);
        body.extend_from_slice(b"e");
        let r = parse_announce_response(&body).unwrap();
        assert_eq!(r.interval, 1800);
        assert_eq!(r.min_interval, Some(60));
        assert_eq!((r.complete, r.incomplete), (Some(5), Some(3)));
        let expected: Vec<SocketAddr> = ["127.0.0.1:6881", "10.0.0.2:80", "[::1]:81"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(r.peers, expected);

        let dict = b"d8:intervali900e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881eed2:ip11:example.org4:porti1eed2:ip3:::14:porti99999eed2:ip3:::14:porti7eeee";
        let r = parse_announce_response(dict).unwrap();
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "[::1]:7".parse().unwrap()
            ]
        );
    }

    #[test]
    fn failure_and_warning() {
        assert_eq!(
            parse_announce_response(b"d14:failure reason17:torrent not founde"),
            Err(TrackerError::Failure("torrent not found".into()))
        );
        assert_eq!(
            TrackerError::Failure("unregistered".into()).to_string(),
            "tracker refused the request: unregistered"
        );
        let r = parse_announce_response(b"d15:warning message4:slowe").unwrap();
        assert_eq!(r.warning.as_deref(), Some("slow"));
        assert_eq!(r.interval, DEFAULT_INTERVAL);
        assert_eq!(parse_announce_response(b"le"), Err(TrackerError::NotADict));
        assert!(matches!(
            parse_announce_response(b"<html>"),
            Err(TrackerError::Bencode(_))
        ));
        assert_eq!(
            parse_announce_response(&encode_failure("nope")),
            Err(TrackerError::Failure("nope".into()))
        );
    }

    #[test]
    fn scrape_urls() {
        let h = [InfoHash([0xaa; 20])];
        assert_eq!(
            scrape_url("http://example.com/announce", &h).unwrap(),
            format!("http://example.com/scrape?info_hash={}", "%AA".repeat(20))
        );
        // Examples from BEP 48.
        assert_eq!(
            scrape_url("http://example.com/x/announce", &[]).as_deref(),
            Some("http://example.com/x/scrape")
        );
        assert_eq!(
            scrape_url("http://example.com/announce.php", &[]).as_deref(),
            Some("http://example.com/scrape.php")
        );
        assert_eq!(
            scrape_url("http://example.com/announce?x2%0644", &[]).as_deref(),
            Some("http://example.com/scrape?x2%0644")
        );
        assert_eq!(
            scrape_url("http://example.com/announce?x=2%0644", &h).unwrap(),
            format!(
                "http://example.com/scrape?x=2%0644&info_hash={}",
                "%AA".repeat(20)
            )
        );
        assert_eq!(scrape_url("http://example.com/a", &[]), None);
        assert_eq!(
            scrape_url("http://example.com/announce?x=2/4", &[]).as_deref(),
            Some("http://example.com/scrape?x=2/4")
        );
        assert_eq!(scrape_url("http://example.com/x%064announce", &[]), None);
        assert_eq!(scrape_url("http://announce", &[]), None);
        assert_eq!(scrape_url("announce", &[]), None);
    }

    #[test]
    fn scrape_response() {
        let mut body = b"d5:filesd20:".to_vec();
        body.extend_from_slice(&[0xaa; 20]);
        body.extend_from_slice(b"d8:completei5e10:downloadedi50e10:incompletei10ee3:bad");
        body.extend_from_slice(b"d8:completei1eeee");
        let s = parse_scrape_response(&body).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[&InfoHash([0xaa; 20])],
            ScrapeStats {
                complete: 5,
                downloaded: 50,
                incomplete: 10
            }
        );
        assert_eq!(
            parse_scrape_response(b"de"),
            Err(TrackerError::Missing("files"))
        );
    }

    proptest! {
        #[test]
        fn announce_query_round_trip(
            ih in any::<[u8; 20]>(), pid in any::<[u8; 20]>(), port in any::<u16>(),
            up in any::<u64>(), down in any::<u64>(), left in any::<u64>(),
            event in proptest::option::of(prop_oneof![Just(Event::Started), Just(Event::Completed), Just(Event::Stopped)]),
            numwant in proptest::option::of(any::<u32>()), key in any::<u32>(),
            tracker_id in proptest::option::of(".{0,10}"),
        ) {
            let r = AnnounceRequest {
                info_hash: InfoHash(ih), peer_id: PeerId(pid), port, uploaded: up, downloaded: down,
                left, event, numwant, key, tracker_id,
            };
            let url = announce_url("http://127.0.0.1:1/announce?pk=1", &r);
            let query = url.split_once('?').unwrap().1;
            prop_assert_eq!(parse_announce_query(query).unwrap(), r);
        }

        #[test]
        fn announce_response_round_trip(
            interval in any::<u32>(), min_interval in proptest::option::of(any::<u32>()),
            tracker_id in proptest::option::of(".{0,10}"),
            complete in proptest::option::of(any::<u32>()), incomplete in proptest::option::of(any::<u32>()),
            peers in proptest::collection::vec(arb_peer(), 0..30),
            warning in proptest::option::of(".{0,10}"),
        ) {
            let mut peers = peers;
            // The wire format groups IPv4 before IPv6.
            peers.sort_by_key(|p| p.is_ipv6());
            let r = AnnounceResponse { interval, min_interval, tracker_id, complete, incomplete, peers, warning };
            prop_assert_eq!(parse_announce_response(&encode_announce_response(&r)).unwrap(), r);
        }

        #[test]
        fn scrape_round_trip(stats in proptest::collection::hash_map(
            any::<[u8; 20]>().prop_map(InfoHash),
            (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(complete, downloaded, incomplete)| ScrapeStats { complete, downloaded, incomplete }),
            0..10,
        )) {
            prop_assert_eq!(parse_scrape_response(&encode_scrape_response(&stats)).unwrap(), stats);
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), s in ".{0,200}") {
            let _ = parse_announce_response(&bytes);
            let _ = parse_scrape_response(&bytes);
            let _ = parse_announce_query(&s);
            let _ = scrape_url(&s, &[]);
        }
    }
}
