#!/usr/bin/env bash
# The project's test command: scripts/test.sh [extra cargo-nextest args]
#
# On Debian 12 it first installs (if missing) every Debian package the tests need,
# without letting package scripts start system services, then installs
# cargo-nextest if missing, then runs `cargo nextest run --workspace "$@"`.
#
# Environment:
#   SKIP_APT=1            do not check/install Debian packages (tests needing a
#                         missing program then print "skipping: ..." and pass)
#   EXTRA_APT_PACKAGES    more packages to ensure, space-separated (ad hoc use)
#   TEST_SWARM_STRICT     set to 1 here once every package is present, so a test
#                         whose program is missing fails instead of skipping
#   CI=true               selects the nextest "ci" profile (no fail-fast)
#   RIPTIDE_TEST_POSTGRES_URL  use this PostgreSQL for media-library's Postgres run
#                         instead of starting a throwaway cluster
set -euo pipefail

cd "$(dirname "$0")/.."

log() { echo "test.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ----------------------------------------------------------------------------
# Debian packages the tests need. EXTEND THIS LIST (keep one per line and say
# which tests need it). Programs are found on PATH by test_swarm::require().
APT_PACKAGES=(
  opentracker          # test-swarm Tracker (HTTP+UDP tracker on 127.0.0.1)
  mktorrent            # test-swarm make_torrent
  aria2                # test-swarm Aria2Peer (aria2c)
  transmission-cli     # transmission-show (info-hash cross-check), transmission-remote
  transmission-daemon  # test-swarm TransmissionPeer
  qbittorrent-nox      # qBittorrent reference peer
  python3-libtorrent   # test-swarm LibtorrentPeer (runs under /usr/bin/python3)
  ffmpeg               # media probing / transcoding tests
  chromium             # streaming/tests/hls.rs (HLS in a real browser), riptide/tests/swarm_web.rs (web UI end to end)
  nodejs               # runs tests/browser/*.mjs (playwright-core): HLS, direct play, web UI end to end; npm: see below
  curl                 # ad-hoc HTTP in scripts
  btrfs-progs          # piece-store tests/import.rs: reflink on a loop-mounted btrfs image
  xfsprogs             # piece-store tests/import.rs: reflink on a loop-mounted xfs image
  postgresql           # media-library: the shared suite's PostgreSQL run (cluster started below)
  util-linux           # setpriv: media-library's unreadable-folder test drops root's DAC override; unshare: riptide swarm_lsd test's own network namespace
  iproute2             # ip: sets up lo (multicast) in the swarm_lsd test's own network namespace
)
# ----------------------------------------------------------------------------
if [ -n "${EXTRA_APT_PACKAGES:-}" ]; then
  read -r -a extra <<<"$EXTRA_APT_PACKAGES"
  APT_PACKAGES+=("${extra[@]}")
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
fi

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

POLICY=/usr/sbin/policy-rc.d
POLICY_CREATED=0
cleanup_policy() {
  if [ "$POLICY_CREATED" = 1 ]; then
    "${SUDO[@]}" rm -f "$POLICY" || log "could not remove $POLICY"
  fi
}

install_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    is_installed "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "all Debian test packages present"
    return 0
  fi
  if [ "${#SUDO[@]}" -gt 0 ] && ! command -v sudo >/dev/null 2>&1; then
    die "need root or sudo to install: ${missing[*]}"
  fi
  log "installing: ${missing[*]}"
  # Package postinst scripts must not start system services (transmission-daemon,
  # opentracker would grab their default ports): invoke-rc.d consults policy-rc.d,
  # and exit code 101 means "action forbidden". Only create it if none exists, and
  # remove only what we created.
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from riptide scripts/test.sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 755 "$POLICY"
    POLICY_CREATED=1
    trap cleanup_policy EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q \
    || die "apt-get update failed"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "${missing[@]}" || die "apt-get install failed for: ${missing[*]}"
  cleanup_policy
  POLICY_CREATED=0
  # Belt and braces for systems where a service manager started them anyway:
  # stop them by service name through the init system (never by process name).
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for svc in transmission-daemon opentracker qbittorrent-nox; do
      "${SUDO[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
  fi
  for p in "${missing[@]}"; do
    is_installed "$p" || die "package $p still not installed"
  done
}

if [ "${SKIP_APT:-0}" = 1 ]; then
  log "SKIP_APT=1: not checking Debian packages"
elif command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
  install_packages
  # Every program is there, so a test that would skip is a real failure.
  /usr/bin/python3 -c 'import libtorrent' 2>/dev/null \
    || die "/usr/bin/python3 cannot import libtorrent (python3-libtorrent)"
  export TEST_SWARM_STRICT=1
else
  log "no apt-get/dpkg (not Debian?): tests that need missing programs will skip"
fi

# playwright-core for the HLS browser test (crates/streaming/tests/hls.rs),
# pinned in its package.json. Installed once; later runs need no network.
BROWSER_TEST_DIR=crates/streaming/tests/browser
# Debian's nodejs has no npm (its `npm` package); a NodeSource nodejs bundles
# it and conflicts with Debian's, so install the package only when npm is missing.
if [ "${SKIP_APT:-0}" != 1 ] && ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  log "installing npm (Debian package)"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends npm || die "apt-get install npm failed"
fi
# The web UI's end-to-end test (crates/riptide/tests/swarm_web.rs) has its own.
for dir in "$BROWSER_TEST_DIR" crates/riptide/tests/browser; do
  if [ -d "$dir" ] && command -v npm >/dev/null 2>&1 \
     && [ ! -d "$dir/node_modules/playwright-core" ]; then
    log "installing playwright-core (npm) in $dir"
    (cd "$dir" && npm install --no-audit --no-fund --omit=dev) \
      || die "npm install of playwright-core failed in $dir"
  fi
done

# schemathesis (PyPI) for crates/riptide/tests/web_api_schema.rs, in a venv
# of its own. Without it (no python3 venv, no PyPI) that test skips and says
# why; the reason is printed here too.
SCHEMATHESIS_VENV=.venv-schemathesis
if [ ! -x "$SCHEMATHESIS_VENV/bin/schemathesis" ]; then
  PY=""
  for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import venv, ensurepip' 2>/dev/null; then PY=$p; break; fi
  done
  if [ -z "$PY" ] && [ "${SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
      --no-install-recommends python3-venv >/dev/null 2>&1 && PY=/usr/bin/python3
  fi
  if [ -z "$PY" ]; then
    log "schemathesis: no python3 with venv; the API schema test will skip"
  elif "$PY" -m venv "$SCHEMATHESIS_VENV" \
       && "$SCHEMATHESIS_VENV/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4,<5'; then
    log "schemathesis installed in $SCHEMATHESIS_VENV"
  else
    log "schemathesis: pip could not install it (no PyPI?); the API schema test will skip"
    rm -rf "$SCHEMATHESIS_VENV"
  fi
fi
if [ -x "$SCHEMATHESIS_VENV/bin/schemathesis" ]; then
  RIPTIDE_SCHEMATHESIS="$(pwd)/$SCHEMATHESIS_VENV/bin/schemathesis"
  export RIPTIDE_SCHEMATHESIS
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest (cargo install cargo-nextest --locked)"
  cargo install cargo-nextest --locked || die "cargo install cargo-nextest failed"
fi

# ----------------------------------------------------------------------------
# A throwaway PostgreSQL cluster for media-library's shared test suite (its
# Postgres half skips, saying why, when RIPTIDE_TEST_POSTGRES_URL is unset).
# Trust auth on 127.0.0.1 and a socket in its own temp dir, on a free port,
# fsync off: it only lives for this run and is removed on exit.
PG_DIR=""
PG_AS=()
PG_BIN=""
stop_postgres() {
  if [ -n "$PG_DIR" ]; then
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
start_postgres() {
  if [ -n "${RIPTIDE_TEST_POSTGRES_URL:-}" ]; then
    log "PostgreSQL tests use RIPTIDE_TEST_POSTGRES_URL"
    return 0
  fi
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    log "PostgreSQL is not installed: media-library's Postgres tests will skip"
    return 0
  fi
  PG_DIR=$(mktemp -d /tmp/riptide-pg.XXXXXX)
  trap stop_postgres EXIT
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses to run as root.
    chown postgres "$PG_DIR"
    PG_AS=(runuser -u postgres --)
  fi
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >"$PG_DIR/initdb.log" 2>&1 \
    || die "initdb failed: $(tail -n 5 "$PG_DIR/initdb.log")"
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || die "PostgreSQL did not start: $(tail -n 5 "$PG_DIR/server.log")"
  export RIPTIDE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  log "PostgreSQL test cluster on 127.0.0.1:$port"
}
start_postgres

args=("$@")
profile=()
if [ "${CI:-}" = true ] && [[ " $* " != *" --profile "* && " $* " != *" -P "* ]]; then
  profile=(--profile ci)
fi
log "cargo nextest run --workspace ${profile[*]} ${args[*]}"
# Not exec: the EXIT trap stops the PostgreSQL cluster.
status=0
cargo nextest run --workspace "${profile[@]}" "${args[@]}" || status=$?
exit "$status"
