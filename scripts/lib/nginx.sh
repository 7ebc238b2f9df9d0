# nginx for the deploy checks and the nginx integration test: the installed one, else
# Debian's package fetched with `apt-get download` and unpacked into the tools cache (no
# root needed, no service started, the system left as it was). Needs `log`, `as_root`
# and TIDINGS_CACHE from the caller.

ensure_nginx() { # sets NGINX and exports TIDINGS_NGINX
  NGINX=$(command -v nginx || true)
  [ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
  if [ -n "$NGINX" ]; then export TIDINGS_NGINX="$NGINX"; return; fi
  local dir="${TIDINGS_CACHE}/tools/nginx-debian"
  if [ ! -x "$dir/usr/sbin/nginx" ]; then
    log "fetching Debian's nginx package (apt-get download) into $dir"
    command -v apt-get >/dev/null || { log "no nginx and no apt-get: install nginx and rerun"; return 1; }
    local deb
    deb=$(mktemp -d "${TMPDIR:-/tmp}/nginx-deb.XXXXXX")
    mkdir -p "$deb" && chmod 0777 "$deb" # apt's sandbox user writes the download
    if ! (cd "$deb" && apt-get download -q nginx >/dev/null 2>&1); then
      as_root apt-get update -q >/dev/null
      (cd "$deb" && apt-get download -q nginx >/dev/null)
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$deb"/nginx_*.deb "$dir"
    rm -rf "$deb"
  fi
  NGINX="$dir/usr/sbin/nginx"
  export TIDINGS_NGINX="$NGINX"
}
