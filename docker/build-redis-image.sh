#!/usr/bin/env bash
# Builds an offline equivalent of `redis:7-alpine` from the host's redis-server, for machines that
# reach no container registry. gitspy-chaos uses it as its default Docker image.
#
# Usage: docker/build-redis-image.sh [TAG...]      (default tag: gitspy-redis:7)
#   e.g. docker/build-redis-image.sh gitspy-redis:7 redis:7-alpine
#        to also stand in for scenarios that name redis:7-alpine.
#
# The image is FROM scratch and holds: the redis-server binary (under that name), redis-cli (for
# healthchecks), every library `ldd` lists for them plus the dynamic loader, and /data owned by
# uid/gid 999, the user Redis runs as. See docker/redis.Dockerfile.
#
# Needs: a Docker daemon that answers (scripts/setup-docker.sh starts one),
#        redis-server and redis-cli (`apt-get install -y redis-server`), ldd (libc-bin), tar.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$#" -gt 0 ]; then TAGS=("$@"); else TAGS=("gitspy-redis:7"); fi
REDIS_UID=999
REDIS_GID=999

fail() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 1; }

SERVER="$(command -v redis-server || true)"
CLI="$(command -v redis-cli || true)"
[ -n "$SERVER" ] || fail "redis-server is not on PATH" "apt-get install -y redis-server"
[ -n "$CLI" ] || fail "redis-cli is not on PATH" "apt-get install -y redis-tools"
command -v ldd >/dev/null || fail "ldd is not installed" "apt-get install -y libc-bin"
command -v docker >/dev/null || fail "the docker client is not installed" "apt-get install -y docker.io"
timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1 \
    || fail "the Docker daemon does not answer" "scripts/setup-docker.sh"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/data" "$ROOT/tmp"

# Debian installs redis-server as a symlink to redis-check-rdb; the binary chooses its role from
# argv[0], so it must be copied under the name redis-server.
cp -L "$SERVER" "$ROOT/usr/local/bin/redis-server"
cp -L "$CLI" "$ROOT/usr/local/bin/redis-cli"

# Every shared object ldd resolves (absolute paths: `name => /path (addr)` or the loader's
# `/path (addr)`), copied with symlinks resolved to the same path inside the image.
copy_libs() {
    ldd "$1" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' | while read -r lib; do
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    done
}
copy_libs "$ROOT/usr/local/bin/redis-server"
copy_libs "$ROOT/usr/local/bin/redis-cli"
[ -e "$ROOT/lib64/ld-linux-x86-64.so.2" ] || [ -n "$(find "$ROOT" -name 'ld-linux*' -print -quit)" ] \
    || fail "ldd listed no dynamic loader for redis-server" ""

chmod 1777 "$ROOT/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$ROOT" -cf "$WORK/rootfs.tar" --exclude=./data .
# /data belongs to the Redis user, so AOF and RDB files can be written without root.
tar --numeric-owner --owner="$REDIS_UID" --group="$REDIS_GID" -C "$ROOT" -rf "$WORK/rootfs.tar" ./data
cp "$HERE/redis.Dockerfile" "$WORK/Dockerfile"

TAG_ARGS=()
for t in "${TAGS[@]}"; do TAG_ARGS+=(-t "$t"); done
VERSION="$("$SERVER" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
# The legacy builder: Debian's docker.io ships no buildx, and FROM scratch needs no registry.
DOCKER_BUILDKIT=0 docker build -q "${TAG_ARGS[@]}" \
    --label "gitspy-chaos.image=offline-redis" \
    --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.description=redis-server $VERSION from the host, built offline by docker/build-redis-image.sh" \
    "$WORK" >/dev/null

# Prove the image works before saying so: redis-server starts as uid 999 and can write /data.
CHECK="gitspy-redis-image-check-$$"
docker run -d --name "$CHECK" "${TAGS[0]}" >/dev/null
cleanup_check() { docker rm -f "$CHECK" >/dev/null 2>&1 || true; }
trap 'cleanup_check; rm -rf "$WORK"' EXIT
ok=""
for _ in $(seq 1 50); do
    if [ "$(docker exec "$CHECK" redis-cli ping 2>/dev/null)" = "PONG" ] \
        && docker exec "$CHECK" redis-cli set gitspy:image-check 1 >/dev/null 2>&1 \
        && [ "$(docker exec "$CHECK" redis-cli config get appendonly | tail -n 1)" = "yes" ]; then
        ok=1
        break
    fi
    sleep 0.2
done
if [ -z "$ok" ]; then
    docker logs "$CHECK" >&2 || true
    fail "the built image ${TAGS[0]} did not answer PING with AOF on" ""
fi
echo "built ${TAGS[*]} (redis-server $VERSION, $(docker image inspect -f '{{.Size}}' "${TAGS[0]}") bytes)"
