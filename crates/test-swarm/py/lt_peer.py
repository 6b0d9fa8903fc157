"""libtorrent peer driver for test-swarm (embedded in the crate, written to the workdir).

Run as: /usr/bin/python3 lt_peer.py '<json config>'
(Debian's python: python3-libtorrent is built for it; a pyenv python3 cannot import it.)

Roles:
  seed   serve `save_path` (seed_mode: verified lazily on request; or `trust_have_all`:
         all pieces claimed through resume data and never hashed, which is how a
         deliberately corrupted copy gets served - seed_mode would detect it)
  leech  download from a .torrent or a magnet into `save_path`, then keep seeding
  create write a v1-only .torrent (for piece sizes mktorrent refuses), or with
         `hybrid` a v1+v2 hybrid one (BEP 52, pad files)

Protocol with the Rust side:
  * prints `RIPTIDE-LT-READY port=<n>` once listening and the torrent is added;
  * rewrites `status_file` (key=value lines, atomically) every 100 ms;
  * connects out to every `ip:port` line of `connect_file` (re-read every 0.5 s,
    retried while not connected);
  * exits by itself when the parent process is gone or after `max_life` seconds.
Only loopback addresses are used; UPnP, NAT-PMP and uTP are off. PEX, LSD and
DHT are off unless the config asks for them (`pex`, `lsd`, `dht_nodes`; LSD
only in a test's own network namespace, where multicast stays on `lo`); with DHT on,
the only bootstrap nodes are the `dht_nodes` given (loopback addresses), never
libtorrent's public default. `encryption: "forced"` makes the peer accept and
make only RC4-encrypted (MSE/PE) connections.
"""
import json
import os
import sys
import time

import libtorrent as lt


def log(*a):
    print("[lt %s]" % time.strftime("%H:%M:%S"), *a, flush=True)


def create(cfg):
    fs = lt.file_storage()
    lt.add_files(fs, cfg["content"])
    # Hybrid (v1 + v2, libtorrent 2.0's default, with BEP 47 pad files) on request.
    flags = 0 if cfg.get("hybrid") else lt.create_torrent.v1_only
    ct = lt.create_torrent(fs, int(cfg["piece_length"]), flags=flags)
    if cfg.get("announce"):
        ct.add_tracker(cfg["announce"])
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(cfg["content"])))
    with open(cfg["output"], "wb") as f:
        f.write(lt.bencode(ct.generate()))
    return 0


def make_session(cfg):
    C = lt.alert.category_t
    s = lt.high_performance_seed() if cfg["role"] == "seed" else {}
    s.update({
        "listen_interfaces": "%s:%d" % (cfg["ip"], cfg["port"]),
        "outgoing_interfaces": cfg["ip"],
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "dht_bootstrap_nodes": "",
        # uTP off: every reference client in the harness talks TCP, and our engine starts with TCP.
        "enable_incoming_utp": False, "enable_outgoing_utp": False,
        # Several test peers share 127.0.0.x: without this libtorrent refuses all but one per IP.
        "allow_multiple_connections_per_ip": True,
        "user_agent": "test-swarm/libtorrent-%s" % lt.__version__,
        "alert_mask": int(C.error_notification | C.status_notification | C.peer_notification
                          | C.connect_notification | C.tracker_notification),
        "upload_rate_limit": int(cfg.get("upload_limit") or 0),
        "download_rate_limit": int(cfg.get("download_limit") or 0),
        # Announce (and re-announce) promptly; the tracker is local.
        "min_announce_interval": 1,
    })
    if cfg.get("encryption") == "forced":
        s.update({"out_enc_policy": 0, "in_enc_policy": 0,  # pe_forced
                  "allowed_enc_level": 2,  # pe_rc4
                  "prefer_rc4": True})
    if cfg.get("lsd"):
        # Only inside a test's own network namespace: LSD multicasts to the LAN.
        s.update({"enable_lsd": True, "local_service_announce_interval": 2})
    dht_nodes = cfg.get("dht_nodes")
    if dht_nodes is not None:
        s.update({
            "enable_dht": True,
            # Never the public default (dht.libtorrent.org): the test's own nodes are added
            # with add_dht_node (libtorrent keeps bootstrap "routers" out of its routing
            # table, so nodes that only bootstrap off each other never get a table).
            "dht_bootstrap_nodes": "",
            # All test nodes share 127.0.0.0/24, which these filters would reject as a
            # Sybil pattern; and loopback counts as "dark internet".
            "dht_restrict_routing_ips": False, "dht_restrict_search_ips": False,
            "dht_ignore_dark_internet": False, "dht_prefer_verified_node_ids": False,
            "dht_announce_interval": 5,
        })
    if cfg.get("upload_limit") or cfg.get("download_limit"):
        # The limiter hands out quota per tick (default 500 ms), which would quantise latencies.
        s["tick_interval"] = 50
    # Default plugins (ut_metadata, ut_pex, smart_ban) stay loaded, as in real clients; PEX is
    # switched off per torrent (disable_pex) so that who-talks-to-whom stays explicit in tests.
    ses = lt.session(s)
    if cfg.get("upload_limit") or cfg.get("download_limit"):
        # Loopback peers are in the "local" peer class, which global limits skip.
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(f)
    return ses


def dht_node_count(ses):
    try:
        return ses.status().dht_nodes
    except Exception:  # deprecated API missing from this build
        return 0


def main():
    cfg = json.loads(sys.argv[1])
    if cfg["role"] == "create":
        return create(cfg)
    ses = make_session(cfg)
    if cfg.get("magnet"):
        atp = lt.parse_magnet_uri(cfg["magnet"])
    else:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(cfg["torrent"])
    atp.save_path = cfg["save_path"]
    flags = atp.flags
    # default_flags include `paused` (the auto-manager would start it); we manage it ourselves.
    flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    if not cfg.get("lsd"):
        flags |= lt.torrent_flags.disable_lsd
    if not cfg.get("pex"):
        flags |= lt.torrent_flags.disable_pex
    if cfg.get("dht_nodes") is None:
        flags |= lt.torrent_flags.disable_dht
    if not cfg.get("announce", True):
        # Drop the .torrent's / magnet's trackers: this peer is reachable only by address.
        atp.trackers = []
        flags |= lt.torrent_flags.override_trackers
    if cfg["role"] == "seed":
        if cfg.get("trust_have_all"):
            # Claim every piece via resume data: libtorrent then never hashes the files, and serves
            # whatever bytes they hold. (seed_mode would hash each piece on first request and stop
            # serving a corrupt one.)
            atp.have_pieces = [True] * atp.ti.num_pieces()
        else:
            flags |= lt.torrent_flags.seed_mode
    if cfg.get("sequential"):
        flags |= lt.torrent_flags.sequential_download
    atp.flags = flags
    for node in cfg.get("dht_nodes") or []:
        host, _, p = node.rpartition(":")
        ses.add_dht_node((host, int(p)))
    h = ses.add_torrent(atp)
    if cfg.get("upload_limit"):
        h.set_upload_limit(int(cfg["upload_limit"]))
    if cfg.get("download_limit"):
        h.set_download_limit(int(cfg["download_limit"]))
    port = ses.listen_port()
    print("RIPTIDE-LT-READY port=%d" % port, flush=True)

    parent = cfg.get("parent_pid") or os.getppid()
    end = time.monotonic() + float(cfg.get("max_life", 3600))
    counters = {"hash_failures": 0, "announces": 0, "tracker_errors": 0, "bans": 0}
    error = ""
    last_connect = 0.0
    last_log = 0.0
    connect_file = cfg.get("connect_file")
    status_file = cfg["status_file"]
    while time.monotonic() < end and os.getppid() == parent:
        for a in ses.pop_alerts():
            name = type(a).__name__
            if name == "hash_failed_alert":
                counters["hash_failures"] += 1
            elif name == "tracker_reply_alert":
                counters["announces"] += 1
            elif name == "tracker_error_alert":
                counters["tracker_errors"] += 1
            elif name == "peer_ban_alert":
                counters["bans"] += 1
            elif name in ("file_error_alert", "metadata_failed_alert", "torrent_error_alert"):
                error = a.message()
            if name not in ("state_update_alert",):
                log(name, a.message())
        now = time.monotonic()
        if connect_file and now - last_connect > 0.5 and os.path.exists(connect_file):
            last_connect = now
            with open(connect_file) as f:
                targets = set()
                for line in f.read().split():
                    host, _, p = line.rpartition(":")
                    if host and p.isdigit():
                        targets.add((host, int(p)))
            connected = {(pi.ip[0], pi.ip[1]) for pi in h.get_peer_info()}
            for t in targets - connected:
                try:
                    h.connect_peer(t)
                except Exception as e:  # torrent not ready yet (magnet without metadata): retry
                    log("connect_peer %s: %s" % (t, e))
        st = h.status()
        if st.errc.value() and not error:
            error = st.errc.message()
        peers = ",".join("%s:%d" % (pi.ip[0], pi.ip[1]) for pi in h.get_peer_info())
        lines = {
            "ready": 1, "port": port, "state": str(st.state), "progress": "%.6f" % st.progress,
            "is_seeding": int(st.is_seeding), "is_finished": int(st.is_finished),
            "has_metadata": int(st.has_metadata), "num_peers": st.num_peers, "peers": peers,
            "total_upload": st.all_time_upload, "total_download": st.all_time_download,
            "total_payload_upload": st.total_payload_upload,
            "total_payload_download": st.total_payload_download,
            "error": error.replace("\n", " "),
            "dht_nodes": dht_node_count(ses),
        }
        lines.update(counters)
        tmp = status_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join("%s=%s\n" % kv for kv in lines.items()))
        os.replace(tmp, status_file)
        if now - last_log > 2:
            last_log = now
            log("state=%s progress=%.3f peers=%d up=%d down=%d" % (
                st.state, st.progress, st.num_peers, st.total_payload_upload, st.total_payload_download))
        time.sleep(0.1)
    log("exiting (parent gone or max_life reached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
