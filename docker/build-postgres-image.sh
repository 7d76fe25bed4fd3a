#!/usr/bin/env bash
# Builds a PostgreSQL image offline from the host's PostgreSQL, the way build-redis-image.sh builds
# Redis: FROM scratch, the binaries, the libraries `ldd` lists plus the loader. The cluster is
# initialised here, on the host, and shipped in the image (initdb runs the server through a
# shell, and the image has none).
#
# Usage: docker/build-postgres-image.sh [TAG...]       (default tag: gitspy-postgres:local)
# Env:   PG_USER (default gitspy), PG_PASSWORD (default gitspy-multi-demo: a local demo only —
#        set your own), PG_DB (default gitspy), PG_BINDIR (default: the newest
#        /usr/lib/postgresql/*/bin).
#
# Inside: postgres -D /var/lib/postgresql/data as uid/gid 999, listening on *:5432, password
# authentication (scram-sha-256) from any address, `jit = off` (the LLVM libraries are left out),
# time zones from the host's /usr/share/zoneinfo. The URL: postgres://PG_USER:PG_PASSWORD@HOST:5432/PG_DB.
# The script proves the image works: it starts a container and waits for pg_isready.
#
# Needs: root (initdb runs as the host's `postgres` user through runuser), PostgreSQL
# (`apt-get install -y postgresql`), a Docker daemon that answers, ldd, tar.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$#" -gt 0 ]; then TAGS=("$@"); else TAGS=("gitspy-postgres:local"); fi
APP_UID=999
APP_GID=999
PG_USER="${PG_USER:-gitspy}"
PG_PASSWORD="${PG_PASSWORD:-gitspy-multi-demo}"
PG_DB="${PG_DB:-gitspy}"

fail() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 1; }

BINDIR="${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
[ -n "$BINDIR" ] && [ -x "$BINDIR/postgres" ] && [ -x "$BINDIR/initdb" ] \
    || fail "no PostgreSQL server found under /usr/lib/postgresql/*/bin" "apt-get install -y postgresql"
PGHOME="$(dirname "$BINDIR")"
MAJOR="$(basename "$PGHOME")"
SHARE="/usr/share/postgresql/$MAJOR"
[ -d "$SHARE" ] || fail "no $SHARE (PostgreSQL's share files)" "apt-get install -y postgresql"
[ "$(id -u)" = 0 ] || fail "initdb must run as the postgres user: run this script as root" ""
id postgres >/dev/null 2>&1 || fail "the host has no postgres user" "apt-get install -y postgresql"
command -v ldd >/dev/null || fail "ldd is not installed" "apt-get install -y libc-bin"
command -v docker >/dev/null || fail "the docker client is not installed" "apt-get install -y docker.io"
timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1 \
    || fail "the Docker daemon does not answer" "scripts/setup-docker.sh"

WORK="$(mktemp -d)"
CHECK="gitspy-postgres-image-check-$$"
cleanup() {
    docker rm -f "$CHECK" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
chmod 0755 "$WORK"
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/usr/lib/postgresql/bin" "$ROOT/usr/lib/postgresql/lib" "$ROOT/usr/share" \
    "$ROOT/etc" "$ROOT/tmp" "$ROOT/var/run/postgresql" "$ROOT/var/lib/postgresql"

# The binaries keep their relative layout (bin/, lib/ next to each other; share/ found through the
# compiled-in path), so postgres finds its modules and share files where Debian put them.
mkdir -p "$ROOT$BINDIR" "$ROOT$PGHOME/lib" "$ROOT$SHARE"
cp -L "$BINDIR/postgres" "$BINDIR/pg_isready" "$ROOT$BINDIR/"
ln -s "$BINDIR/postgres" "$ROOT/usr/lib/postgresql/bin/postgres"
ln -s "$BINDIR/pg_isready" "$ROOT/usr/lib/postgresql/bin/pg_isready"
rmdir "$ROOT/usr/lib/postgresql/lib"
# Every module but the JIT (it needs LLVM's libraries; jit is off) and the build helpers.
find "$PGHOME/lib" -maxdepth 1 -name '*.so' ! -name 'llvmjit*' -exec cp -L {} "$ROOT$PGHOME/lib/" \;
cp -a "$SHARE/." "$ROOT$SHARE/"
cp -a /usr/share/zoneinfo "$ROOT/usr/share/zoneinfo"

copy_libs() {
    ldd "$1" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' | while read -r lib; do
        [ -e "$ROOT$lib" ] && continue
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    done
}
copy_libs "$BINDIR/postgres"
copy_libs "$BINDIR/pg_isready"
for so in "$ROOT$PGHOME"/lib/*.so; do copy_libs "$so"; done
[ -n "$(find "$ROOT" -name 'ld-linux*' -print -quit)" ] || fail "ldd listed no dynamic loader for postgres" ""

printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/usr/lib/postgresql/bin/postgres\npostgres:x:%s:%s:postgres:/var/lib/postgresql:/usr/lib/postgresql/bin/postgres\n' "$APP_UID" "$APP_GID" >"$ROOT/etc/passwd"
printf 'root:x:0:\npostgres:x:%s:\n' "$APP_GID" >"$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"

# The cluster, initialised on the host as its postgres user, then handed to uid 999 in the tarball.
DATA="$WORK/data"
install -d -o postgres -g postgres -m 0700 "$DATA"
printf '%s\n' "$PG_PASSWORD" >"$WORK/pwfile"
chown postgres "$WORK/pwfile"
runuser -u postgres -- "$BINDIR/initdb" -D "$DATA" -U "$PG_USER" --pwfile="$WORK/pwfile" \
    -E UTF8 --no-locale --auth-local=trust --auth-host=scram-sha-256 >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; fail "initdb failed" ""; }
cat >>"$DATA/postgresql.conf" <<CONF
# docker/build-postgres-image.sh
listen_addresses = '*'
unix_socket_directories = '/tmp'
jit = off
timezone = 'UTC'
log_timezone = 'UTC'
max_connections = 200
CONF
printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$DATA/pg_hba.conf"
# The database, created by a single-user backend (no shell, no server needed).
echo "CREATE DATABASE \"$PG_DB\" OWNER \"$PG_USER\";" \
    | runuser -u postgres -- "$BINDIR/postgres" --single -D "$DATA" -j postgres >"$WORK/createdb.log" 2>&1 \
    || { cat "$WORK/createdb.log" >&2; fail "creating database $PG_DB failed" ""; }
rm -f "$WORK/pwfile"
mv "$DATA" "$ROOT/var/lib/postgresql/data"

TAR_FLAGS=(--numeric-owner --sort=name --mtime=@0)
tar "${TAR_FLAGS[@]}" --owner=0 --group=0 -C "$ROOT" -cf "$WORK/rootfs.tar" \
    --exclude=./var/lib/postgresql --exclude=./var/run/postgresql .
tar "${TAR_FLAGS[@]}" --owner="$APP_UID" --group="$APP_GID" -C "$ROOT" -rf "$WORK/rootfs.tar" \
    ./var/lib/postgresql ./var/run/postgresql
cp "$HERE/postgres.Dockerfile" "$WORK/Dockerfile"

TAG_ARGS=()
for t in "${TAGS[@]}"; do TAG_ARGS+=(-t "$t"); done
VERSION="$("$BINDIR/postgres" --version | awk '{print $3}')"
DOCKER_BUILDKIT=0 docker build -q "${TAG_ARGS[@]}" \
    --label "gitspy-chaos.image=offline-postgres" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.description=PostgreSQL $VERSION from the host, built offline by docker/build-postgres-image.sh" \
    "$WORK" >/dev/null 2>"$WORK/build.log" \
    || { cat "$WORK/build.log" >&2; fail "docker build of ${TAGS[0]} failed" ""; }

# Prove it: the server starts as uid 999 and answers pg_isready over TCP.
docker run -d --name "$CHECK" "${TAGS[0]}" >/dev/null
ok=""
for _ in $(seq 1 100); do
    if docker exec "$CHECK" /usr/lib/postgresql/bin/pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
done
if [ -z "$ok" ]; then
    docker logs "$CHECK" >&2 || true
    fail "PostgreSQL in ${TAGS[0]} did not become ready" "see its log above"
fi
echo "built ${TAGS[*]} (PostgreSQL $VERSION, database $PG_DB, user $PG_USER, $(docker image inspect -f '{{.Size}}' "${TAGS[0]}") bytes)"
