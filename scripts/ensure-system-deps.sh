#!/usr/bin/env bash
# Makes sure the system binaries rwsplit's demo and tests start are present:
# the PostgreSQL 15+ server (initdb, postgres, pg_basebackup) and, when asked, more
# Debian packages (the benchmark adds pgbouncer and pgpool2). redis-sentinel is the
# authority test/redis-sentinel.test.ts follows (`redis.failover.mode: follow`).
# Installs them with apt-get when we are root on Debian/Ubuntu; otherwise stops and
# says exactly what to install.
set -euo pipefail

extra_pkgs=(redis-server redis-tools redis-sentinel nutcracker "$@")

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
