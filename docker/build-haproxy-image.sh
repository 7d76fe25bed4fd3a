#!/usr/bin/env bash
# Builds the load balancer image offline from the host's HAProxy, the way
# docker/build-redis-image.sh builds Redis: FROM scratch, the binary, the libraries `ldd` lists
# plus the loader, and docker/haproxy/gitspy.cfg as the default configuration. No registry.
#
# Usage: docker/build-haproxy-image.sh [TAG...]      (default tag: gitspy-haproxy:local)
#
# The image runs /usr/sbin/haproxy -db -f /usr/local/etc/haproxy/haproxy.cfg as uid/gid 999
# (ports 8080 and 8081 need no root). See docker/haproxy.Dockerfile. The script proves the image
# works before it says so: the configuration checks (`haproxy -c`), and HAProxy starts and keeps
# running.
#
# Needs: a Docker daemon that answers (scripts/setup-docker.sh starts one), haproxy
# (`apt-get install -y haproxy`), ldd (libc-bin), tar.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$#" -gt 0 ]; then TAGS=("$@"); else TAGS=("gitspy-haproxy:local"); fi
APP_UID=999
APP_GID=999

fail() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 1; }

HAPROXY="$(command -v haproxy || true)"
[ -n "$HAPROXY" ] || [ ! -x /usr/sbin/haproxy ] || HAPROXY=/usr/sbin/haproxy
[ -n "$HAPROXY" ] || fail "haproxy is not installed" "apt-get install -y haproxy"
command -v ldd >/dev/null || fail "ldd is not installed" "apt-get install -y libc-bin"
command -v docker >/dev/null || fail "the docker client is not installed" "apt-get install -y docker.io"
timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1 \
    || fail "the Docker daemon does not answer" "scripts/setup-docker.sh"

WORK="$(mktemp -d)"
CHECK="gitspy-haproxy-image-check-$$"
cleanup() {
    docker rm -f "$CHECK" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/usr/sbin" "$ROOT/usr/local/etc/haproxy" "$ROOT/tmp" "$ROOT/etc"

cp -L "$HAPROXY" "$ROOT/usr/sbin/haproxy"
chmod 0755 "$ROOT/usr/sbin/haproxy"
cp "$HERE/haproxy/gitspy.cfg" "$ROOT/usr/local/etc/haproxy/haproxy.cfg"

# Every shared object ldd resolves (absolute paths: `name => /path (addr)` or the loader's
# `/path (addr)`), copied with symlinks resolved to the same path inside the image.
ldd "$HAPROXY" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
[ -n "$(find "$ROOT" -name 'ld-linux*' -print -quit)" ] \
    || fail "ldd listed no dynamic loader for $HAPROXY" ""

# Name resolution without a shell or a distribution: glibc (>= 2.34) has the files and dns
# modules built in; Docker mounts /etc/hosts and /etc/resolv.conf (compose service names).
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/usr/sbin/haproxy\nhaproxy:x:%s:%s:haproxy:/tmp:/usr/sbin/haproxy\n' "$APP_UID" "$APP_GID" >"$ROOT/etc/passwd"
printf 'root:x:0:\nhaproxy:x:%s:\n' "$APP_GID" >"$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"

# Fixed order and times: the same inputs give a byte-identical tarball (Docker's cache reuses it).
tar --numeric-owner --sort=name --mtime=@0 --owner=0 --group=0 -C "$ROOT" -cf "$WORK/rootfs.tar" .
cp "$HERE/haproxy.Dockerfile" "$WORK/Dockerfile"

TAG_ARGS=()
for t in "${TAGS[@]}"; do TAG_ARGS+=(-t "$t"); done
VERSION="$("$HAPROXY" -v 2>/dev/null | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p' | head -n 1)"
# The legacy builder: Debian's docker.io ships no buildx, and FROM scratch needs no registry.
DOCKER_BUILDKIT=0 docker build -q "${TAG_ARGS[@]}" \
    --label "gitspy-chaos.image=offline-haproxy" \
    --label "org.opencontainers.image.version=${VERSION:-unknown}" \
    --label "org.opencontainers.image.description=HAProxy ${VERSION:-unknown} from the host, built offline by docker/build-haproxy-image.sh" \
    "$WORK" >/dev/null 2>"$WORK/build.log" \
    || { cat "$WORK/build.log" >&2; fail "docker build of ${TAGS[0]} failed" ""; }

# Prove it: the configuration checks inside the image, and HAProxy starts and keeps running.
out="$(docker run --rm "${TAGS[0]}" -c -f /usr/local/etc/haproxy/haproxy.cfg 2>&1)" \
    || fail "haproxy -c in ${TAGS[0]} failed: $out" ""
docker run -d --name "$CHECK" "${TAGS[0]}" >/dev/null
sleep 1
[ "$(docker inspect -f '{{.State.Running}}' "$CHECK")" = true ] || {
    docker logs "$CHECK" >&2 || true
    fail "HAProxy in ${TAGS[0]} exited right after start" "see its log above"
}
echo "built ${TAGS[*]} (HAProxy ${VERSION:-unknown}, $(docker image inspect -f '{{.Size}}' "${TAGS[0]}") bytes)"
