#!/usr/bin/python3
"""Seeding benchmark (issue 4): one seeder over complete data, 4 aria2c leechers started together.

For each run and each seeder flavour (`riptide`, `transmission`), on loopback only:

  1. a fresh run dir under --work, a fresh opentracker (whitelisting the torrent);
  2. the seeder over complete data, listening on 127.0.0.11:
       riptide:      riptide download T --out DIR --seed --bind 127.0.0.11 --port P
                     --resume-dir RUNDIR/... (DIR/<name> holds the payload, hard-linked from the
                     harness cache; riptide rechecks it, then seeds and announces as a seed)
       transmission: transmission-daemon (harness settings), torrent added over the same DIR;
  3. wait until the tracker's scrape counts 1 seed;
  4. start 4 aria2c leechers together, leecher i bound to 127.0.0.(21+i), DHT/LPD/PEX off,
     --seed-time=0, each with its own download dir; the clock starts before the first spawn;
  5. stop the clock when the last leecher has exited; every leecher must exit with rc 0, and
     after exit every file must have the payload's size and SHA-1.

Reported per flavour: wall time until the last leecher finished, aggregate MB/s
(leechers x size / time, 1 MB = 10^6 B), and the seeder's CPU seconds (user+sys) and peak RSS
of its process tree, polled from /proc from the moment the leechers start to the moment the
last one exits. The leechers also trade pieces among themselves, as in any swarm; that is part
of the measurement for both flavours alike.

Runs interleave the flavours (the order alternates from run to run). One JSON line per run on
stdout and, with --json-out, appended to that file; then a table of runs and a table of medians.
Exit code 0 only if every run was ok.

Reuses the harness ../shared/bench/swarm.py (tracker, payload, torrent, transmission-daemon,
process groups and their cleanup, /proc monitoring). Run with Debian's /usr/bin/python3.
"""
import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWARM_PATH = os.path.normpath(os.path.join(ROOT, "..", "shared", "bench", "swarm.py"))
FLAVOURS = ("riptide", "transmission")
SEED_INDEX = 0  # seeder on swarm.seed_ip(0) = 127.0.0.11


def leech_ip(i):
    return "127.0.0.%d" % (21 + i)


def load_swarm():
    if not os.path.isfile(SWARM_PATH):
        sys.exit("bench_seed.py: error: the benchmark harness %s is missing; this script needs the shared "
                 "folder next to the checkout (../shared/bench/swarm.py, see BENCHMARKS.md)" % SWARM_PATH)
    spec = importlib.util.spec_from_file_location("swarm", SWARM_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sw = load_swarm()
BenchError = sw.BenchError


def log(*a):
    print("[seed %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- payload digests
_DIGESTS = {}


def file_sha1(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def payload_digests(payload):
    key = (payload.root, payload.name)
    if key not in _DIGESTS:
        log("hashing the payload (once) for the final comparison")
        _DIGESTS[key] = {rel: file_sha1(payload.src(rel)) for rel, _ in payload.files}
    return _DIGESTS[key]


def verify_output(payload, out):
    """Size and SHA-1 of every payload file under out/ (same layout as the harness expects)."""
    want = payload_digests(payload)
    for rel, size in payload.files:
        path = payload.path(out, rel)
        try:
            got_size = os.path.getsize(path)
        except OSError as e:
            raise BenchError("%s: missing (%s)" % (path, e.strerror))
        if got_size != size:
            raise BenchError("%s: size %d, expected %d" % (path, got_size, size))
        if file_sha1(path) != want[rel]:
            raise BenchError("%s: content differs from the payload (SHA-1 mismatch)" % path)


def link_payload(payload, data_dir):
    """data_dir/<name>[/<files>] = the payload, hard-linked (copied if linking fails)."""
    for rel, _ in payload.files:
        src = payload.src(rel)
        dst = payload.path(data_dir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


# --------------------------------------------------------------------------- seeders
def start_seeder(procs, flavour, args, torrent, data_dir, rundir):
    ip = sw.seed_ip(SEED_INDEX)
    port = sw.free_port(ip)
    d = os.path.join(rundir, "seed")
    os.makedirs(d, exist_ok=True)
    logf = os.path.join(rundir, "logs", "seed-%s.log" % flavour)
    if flavour == "riptide":
        # --bind: listener and tracker announces both use 127.0.0.11, so the address the tracker
        # records (the announce's source address) is the one the seeder listens on.
        argv = [args.riptide, "download", torrent.path, "--out", data_dir, "--seed",
                "--bind", ip, "--port", str(port), "--resume-dir", os.path.join(d, "resume")]
        env = sw.clean_env(home=d)
        env.pop("RIPTIDE_LOG", None)
        p = procs.spawn("seed-riptide", argv, logf, cwd=d, env=env)
    elif flavour == "transmission":
        p, rpc = sw.start_transmission_daemon(procs, d, ip, port, data_dir, logf)
        sw.transmission_add(rpc, torrent, data_dir)
    else:
        raise BenchError("unknown seeder flavour %r (choose from %s)" % (flavour, ", ".join(FLAVOURS)))
    return p, logf, port


def wait_seed(procs, p, flavour, torrent, logf, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if procs.reap(p) is not None:
            raise BenchError("%s seeder exited rc=%s before seeding: %s" % (flavour, p.returncode, sw.tail(logf, 600)))
        try:
            complete, _ = sw.scrape(torrent.tracker, torrent.info_hash_bytes)
        except (OSError, BenchError, ValueError):
            complete = 0
        if complete >= 1:
            return
        if time.monotonic() > deadline:
            raise BenchError("%s seeder not seeding after %ds (tracker scrape: %d seeds): %s" % (
                flavour, timeout, complete, sw.tail(logf, 600)))
        time.sleep(0.2)


# --------------------------------------------------------------------------- leechers
def aria2_argv(ip, port, out, torrent_path):
    return ["aria2c", "--interface=" + ip, "--listen-port=%d" % port, "--dir=" + out, "--seed-time=0",
            "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
            "--summary-interval=0", "--console-log-level=warn", "--file-allocation=falloc",
            "--check-certificate=false", "--auto-file-renaming=false", torrent_path]


def run_once(args, flavour, payload, template, k):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rundir = os.path.join(args.work, "runs", "%s-seed-%s-r%d-%d" % (stamp, flavour, k, os.getpid()))
    os.makedirs(os.path.join(rundir, "logs"))
    procs = sw.Procs(rundir)
    n = args.leechers
    res = {"bench": "seed", "seeder": flavour, "leecher": "aria2", "leechers": n, "size_bytes": payload.size,
           "files": len(payload.files), "piece_size": args.piece_size, "run": k, "seconds": None,
           "MB_per_s": None, "leecher_seconds": None, "seeder_ready_s": None, "seeder_cpu_seconds": None,
           "seeder_peak_rss_mib": None, "ok": False, "error": None,
           "time": datetime.datetime.now().isoformat(timespec="seconds"), "rundir": rundir}
    if flavour == "riptide":
        res["riptide"] = args.riptide
        res["commit"] = args.commit
    mon = None
    outs = []
    try:
        tdir = os.path.join(rundir, "t")
        os.makedirs(tdir)
        # the info hash does not depend on the announce URL, so the whitelist can be written first
        probe = sw.Torrent(template, "http://127.0.0.1:1/announce", os.path.join(tdir, "probe.torrent"))
        tracker = sw.start_tracker(procs, rundir, [probe.info_hash])
        torrent = sw.Torrent(template, tracker, os.path.join(tdir, payload.name + ".torrent"))
        data_dir = os.path.join(rundir, "seed-data")
        link_payload(payload, data_dir)

        t_seed = time.monotonic()
        seeder, seed_log, seed_port = start_seeder(procs, flavour, args, torrent, data_dir, rundir)
        wait_seed(procs, seeder, flavour, torrent, seed_log, args.seed_timeout)
        res["seeder_ready_s"] = round(time.monotonic() - t_seed, 2)
        log("run %d %s: seeding after %.1fs (tracker counts 1 seed)" % (k, flavour, res["seeder_ready_s"]))

        # prepare the leechers before the clock starts
        used = {seed_port}
        plan = []
        for i in range(n):
            ip = leech_ip(i)
            port = sw.free_port(ip)
            while port in used:
                port = sw.free_port(ip)
            used.add(port)
            d = os.path.join(rundir, "leech%d" % i)
            out = os.path.join(d, "out")
            os.makedirs(out)
            outs.append(out)
            plan.append((i, d, out, aria2_argv(ip, port, out, torrent.path),
                         os.path.join(rundir, "logs", "leech%d-aria2.log" % i)))

        mon = sw.TreeMonitor(seeder.pid)
        mon.mark_baseline()
        mon.start()
        t0 = time.monotonic()
        leechers = []
        for i, d, out, argv, logf in plan:
            leechers.append((i, procs.spawn("leech%d-aria2" % i, argv, logf, cwd=d, env=sw.clean_env(home=d)), logf))
        done = {}
        deadline = t0 + args.timeout
        last_log = t0
        while len(done) < n:
            now = time.monotonic()
            for i, p, logf in leechers:
                if i in done:
                    continue
                rc = procs.reap(p)
                if rc is None:
                    continue
                done[i] = now - t0
                if rc != 0:
                    raise BenchError("leecher %d (aria2c on %s) exited rc=%s after %.1fs: %s" % (
                        i, leech_ip(i), rc, done[i], sw.tail(logf, 600)))
            if len(done) == n:
                break
            if procs.reap(seeder) is not None:
                raise BenchError("%s seeder exited rc=%s while serving: %s" % (
                    flavour, seeder.returncode, sw.tail(seed_log, 600)))
            if now > deadline:
                raise BenchError("timeout after %ds: %d of %d leechers finished" % (args.timeout, len(done), n))
            if now - last_log > 15:
                last_log = now
                log("run %d %s: %.0fs, %d of %d leechers finished" % (k, flavour, now - t0, len(done), n))
            time.sleep(0.05)
        secs = max(done.values())
        mon.stop()
        mon.sample()  # CPU up to the last leecher's exit
        rss, cpu = mon.result()
        mon = None
        for i, out in enumerate(outs):
            try:
                verify_output(payload, out)
            except BenchError as e:
                raise BenchError("leecher %d: %s" % (i, e))
        res.update(seconds=round(secs, 3), MB_per_s=round(n * payload.size / secs / 1e6, 2),
                   leecher_seconds=[round(done[i], 3) for i in range(n)], seeder_cpu_seconds=cpu,
                   seeder_peak_rss_mib=rss, ok=True)
    except BenchError as e:
        res["error"] = str(e)[:1500]
    except Exception as e:  # keep going with the other runs, but report
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        try:
            if mon is not None:
                mon.stop()
        finally:
            procs.stop_all()
        if not args.keep:
            for out in outs:
                shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(os.path.join(rundir, "seed-data"), ignore_errors=True)
    return res


# --------------------------------------------------------------------------- output
def emit(args, res):
    line = json.dumps(res)
    print(line, flush=True)
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(line + "\n")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def report(results, payload, args):
    print()
    rows = [(r["seeder"], r["run"], sw.fmt(r["seconds"]), sw.fmt(r["MB_per_s"], 1),
             " ".join("%.1f" % s for s in r["leecher_seconds"]) if r["leecher_seconds"] else "-",
             sw.fmt(r["seeder_cpu_seconds"]), sw.fmt(r["seeder_peak_rss_mib"], 1), sw.fmt(r["seeder_ready_s"], 1),
             "ok" if r["ok"] else "FAIL: " + (r["error"] or "")[:60]) for r in results]
    sw.print_table(["seeder", "run", "seconds", "agg_MB/s", "leecher_s", "seed_cpu_s", "seed_RSS_MiB", "ready_s",
                    "status"], rows)
    print()
    groups = {}
    for r in results:
        groups.setdefault(r["seeder"], []).append(r)
    rows = []
    medians = {}
    for f, rs in groups.items():
        ok = [r for r in rs if r["ok"]]
        medians[f] = med([r["MB_per_s"] for r in ok])
        rows.append((f, "%d/%d" % (len(ok), len(rs)), sw.fmt(med([r["seconds"] for r in ok])),
                     sw.fmt(medians[f], 1), sw.fmt(med([r["seeder_cpu_seconds"] for r in ok])),
                     sw.fmt(med([r["seeder_peak_rss_mib"] for r in ok]), 1)))
    print("medians (seeding %s, %d file(s), piece %s, to %d aria2c leechers started together):" % (
        sw.human_size(payload.size), len(payload.files), sw.human_size(args.piece_size), args.leechers))
    sw.print_table(["seeder", "ok", "median_s", "median_agg_MB/s", "median_seed_cpu_s", "median_seed_RSS_MiB"], rows)
    if medians.get("riptide") and medians.get("transmission"):
        ratio = medians["riptide"] / medians["transmission"]
        print("riptide / transmission aggregate rate: %.2fx (%s)" % (
            ratio, "riptide at least as fast" if ratio >= 1 else "riptide SLOWER"))


def git_commit():
    try:
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, timeout=10)
        return r.stdout.decode().strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G", help="payload size, binary units: 64M, 1G (default %(default)s)")
    ap.add_argument("--files", type=int, default=1, help="number of files (>1 makes a multi-file torrent; default 1)")
    ap.add_argument("--piece-size", type=sw.parse_size, default=sw.MIB, help="piece size, power of two (default 1M)")
    ap.add_argument("--runs", type=int, default=3, help="runs per flavour (default %(default)s)")
    ap.add_argument("--seeder", dest="flavours", default=",".join(FLAVOURS),
                    help="seeder flavours, comma-separated (default %(default)s)")
    ap.add_argument("--leechers", type=int, default=4, help="aria2c leechers started together (default %(default)s)")
    ap.add_argument("--riptide", default=os.path.join(ROOT, "target", "release", "riptide"),
                    help="riptide binary (default %(default)s)")
    ap.add_argument("--work", default=sw.DEFAULT_WORK, help="work/cache dir shared with swarm.py (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds for the leechers of one run (default %(default)s)")
    ap.add_argument("--seed-timeout", type=float, default=300,
                    help="seconds for the seeder to check its data and be counted as a seed (default %(default)s)")
    ap.add_argument("--json-out", help="also append the JSON lines to this file")
    ap.add_argument("--keep", action="store_true", help="keep the leechers' downloads in the run dirs")
    args = ap.parse_args(argv)

    flavours = [f.strip() for f in args.flavours.split(",") if f.strip()]
    for f in flavours:
        if f not in FLAVOURS:
            sys.exit("bench_seed.py: error: unknown seeder flavour %r (choose from %s)" % (f, ", ".join(FLAVOURS)))
    if not 1 <= args.leechers <= 200:
        sys.exit("bench_seed.py: error: --leechers must be 1..200")
    needed = ["opentracker", "mktorrent", "aria2c"] + (["transmission-daemon"] if "transmission" in flavours else [])
    missing = [b for b in needed if not shutil.which(b)]
    if missing:
        sys.exit("bench_seed.py: error: not found: %s (run ../shared/bench/setup.sh)" % ", ".join(missing))
    if "riptide" in flavours:
        args.riptide = os.path.abspath(args.riptide)
        if not os.access(args.riptide, os.X_OK):
            sys.exit("bench_seed.py: error: %s is not an executable; build it with `cargo build --release -p riptide` "
                     "or pass --riptide PATH" % args.riptide)
    args.commit = git_commit()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    os.makedirs(args.work, exist_ok=True)
    os.chmod(args.work, 0o755)  # opentracker drops to 'nobody' and must read the whitelist
    if args.json_out:
        args.json_out = os.path.abspath(args.json_out)
    results = []
    try:
        payload = sw.make_payload(args.work, sw.parse_size(args.size), args.files)
        template = sw.make_torrent_template(payload, args.piece_size, os.path.join(args.work, "torrents"))
        for k in range(1, args.runs + 1):
            order = flavours if k % 2 else list(reversed(flavours))
            for f in order:
                log("run %d/%d seeder=%s size=%s leechers=%d" % (k, args.runs, f, sw.human_size(payload.size),
                                                                   args.leechers))
                r = run_once(args, f, payload, template, k)
                emit(args, r)
                results.append(r)
                if not r["ok"]:
                    log("run %d %s FAILED: %s" % (k, f, r["error"]))
    except BenchError as e:
        log("error: %s" % e)
        return 2
    except KeyboardInterrupt:
        log("interrupted; processes cleaned up")
        return 130
    report(results, payload, args)
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
