#!/usr/bin/env bash
# Makes sure the system binaries rwsplit's demo and tests start are present:
# the PostgreSQL 15+ server (initdb, postgres, pg_basebackup) and, when asked, more
# Debian packages (the benchmark adds pgbouncer and pgpool2). redis-sentinel is the
# authority test/redis-sentinel.test.ts follows (`redis.failover.mode: follow`).
# Installs them with apt-get when we are root on Debian/Ubuntu; otherwise stops and
# says exactly what to install. A package named with a leading '?' is optional (the C
# compiler for the native core, clang for its fuzzing): installed when we can, otherwise
# only mentioned, never a reason to stop.
set -euo pipefail

extra_pkgs=(redis-server redis-tools redis-sentinel nutcracker)
optional_pkgs=()
for p in "$@"; do
  if [ "${p#\?}" != "$p" ]; then optional_pkgs+=("${p#\?}"); else extra_pkgs+=("$p"); fi
done

install_optional() {
  local want=()
  local p
  for p in "${optional_pkgs[@]+"${optional_pkgs[@]}"}"; do
    dpkg -s "$p" >/dev/null 2>&1 || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "rwsplit: installing optional system packages: ${want[*]}" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1; then
      apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null 2>&1 ||
        echo "rwsplit: could not install ${want[*]}: the native core or its fuzzing will be skipped" >&2
    fi
  else
    echo "rwsplit: optional packages not installed: ${want[*]} (the native core or its fuzzing will be skipped)" >&2
  fi
}

pg_bindir() {
  if command -v pg_config >/dev/null 2>&1; then
    local d
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
  fi
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
  done
  return 1
}

missing=()
pg_bindir >/dev/null || missing+=(postgresql postgresql-contrib)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-contrib)
for p in "${extra_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

install_optional
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

# Unique, order kept.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "rwsplit: installing missing system packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's package starts a cluster on 5432; rwsplit never uses it, so leave it be.
  exit 0
fi

echo "rwsplit: missing system packages: ${missing[*]}" >&2
echo "Install them, for example: sudo apt-get install ${missing[*]}" >&2
echo "(on other systems: a PostgreSQL 15+ server with initdb and pg_basebackup, and psql/pgbench)" >&2
exit 1
