#!/usr/bin/env bash
# Builds the GitSpy image offline from a binary of this workspace, like docker/build-redis-image.sh
# builds the Redis one: FROM scratch, the binary, the libraries `ldd` lists and the loader.
#
# Usage: docker/build-gitspy-image.sh [BINARY] [TAG...]
#   BINARY  default target/debug/gitspy (run `cargo build -p gitspy --bin gitspy` first);
#           target/release/gitspy works the same way.
#   TAG     default gitspy:local
#
# The binary is copied as /gitspy, debug info stripped when `strip` (binutils) is installed (the
# image's behaviour is the same, it is only smaller and faster to build). /data belongs to
# uid/gid 999, the user the image runs as; GITSPY_DB and GITSPY_SPOOL_DIR point into it.
# See docker/gitspy.Dockerfile.
#
# Needs: a Docker daemon that answers (scripts/setup-docker.sh starts one), ldd (libc-bin), tar.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
BIN="${1:-$REPO/target/debug/gitspy}"
shift || true
if [ "$#" -gt 0 ]; then TAGS=("$@"); else TAGS=("gitspy:local"); fi
APP_UID=999
APP_GID=999

fail() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 1; }

[ -f "$BIN" ] || fail "no gitspy binary at $BIN" "cargo build -p gitspy --bin gitspy (or pass the binary's path)"
[ -x "$BIN" ] || fail "$BIN is not executable" ""
command -v ldd >/dev/null || fail "ldd is not installed" "apt-get install -y libc-bin"
command -v docker >/dev/null || fail "the docker client is not installed" "apt-get install -y docker.io"
timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1 \
    || fail "the Docker daemon does not answer" "scripts/setup-docker.sh"

WORK="$(mktemp -d)"
CHECK="gitspy-image-check-$$"
cleanup() {
    docker rm -f "$CHECK" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/data" "$ROOT/tmp" "$ROOT/etc"

cp -L "$BIN" "$ROOT/gitspy"
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$ROOT/gitspy"
fi
chmod 0755 "$ROOT/gitspy"

# Every shared object ldd resolves (absolute paths: `name => /path (addr)` or the loader's
# `/path (addr)`), copied with symlinks resolved to the same path inside the image.
ldd "$BIN" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
[ -n "$(find "$ROOT" -name 'ld-linux*' -print -quit)" ] \
    || fail "ldd listed no dynamic loader for $BIN (is it a glibc-linked binary?)" ""

# Name resolution without a shell or a distribution: glibc (>= 2.34) has the files and dns
# modules built in; Docker mounts /etc/hosts and /etc/resolv.conf (compose service names).
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/gitspy\ngitspy:x:%s:%s:gitspy:/data:/gitspy\n' "$APP_UID" "$APP_GID" >"$ROOT/etc/passwd"
printf 'root:x:0:\ngitspy:x:%s:\n' "$APP_GID" >"$ROOT/etc/group"
chmod 1777 "$ROOT/tmp"

# Fixed order and times: the same binary gives a byte-identical tarball, so Docker's build cache
# gives the same image again instead of a new one each run.
TAR_FLAGS=(--numeric-owner --sort=name --mtime=@0)
tar "${TAR_FLAGS[@]}" --owner=0 --group=0 -C "$ROOT" -cf "$WORK/rootfs.tar" --exclude=./data .
# /data belongs to the GitSpy user, so the store and the spool can be written without root.
tar "${TAR_FLAGS[@]}" --owner="$APP_UID" --group="$APP_GID" -C "$ROOT" -rf "$WORK/rootfs.tar" ./data
cp "$HERE/gitspy.Dockerfile" "$WORK/Dockerfile"

TAG_ARGS=()
for t in "${TAGS[@]}"; do TAG_ARGS+=(-t "$t"); done
PREVIOUS="$(docker image inspect -f '{{.Id}}' "${TAGS[0]}" 2>/dev/null || true)"
VERSION="$("$BIN" --version 2>/dev/null | awk '{print $NF}' || true)"
# The legacy builder: Debian's docker.io ships no buildx, and FROM scratch needs no registry.
DOCKER_BUILDKIT=0 docker build -q "${TAG_ARGS[@]}" \
    --label "gitspy-chaos.image=offline-gitspy" \
    --label "org.opencontainers.image.version=${VERSION:-unknown}" \
    --label "org.opencontainers.image.description=gitspy from $BIN, built offline by docker/build-gitspy-image.sh" \
    "$WORK" >/dev/null 2>"$WORK/build.log" \
    || { cat "$WORK/build.log" >&2; fail "docker build of ${TAGS[0]} failed" ""; }

# A rebuild from a new binary leaves the previous image untagged: remove it unless a container
# still uses it (then Docker refuses, and that is fine).
NEW="$(docker image inspect -f '{{.Id}}' "${TAGS[0]}")"
if [ -n "$PREVIOUS" ] && [ "$PREVIOUS" != "$NEW" ]; then
    docker image rm "$PREVIOUS" >/dev/null 2>&1 || true
fi

# Prove the image works before saying so: the binary starts under the loader as uid 999, and the
# healthcheck subcommand runs (it must fail here: nothing listens in a container of its own).
out="$(docker run --rm --name "$CHECK" "${TAGS[0]}" --help 2>&1)" \
    || fail "the built image ${TAGS[0]} could not run /gitspy --help: $out" ""
case "$out" in
    *healthcheck*) ;;
    *) fail "/gitspy --help in ${TAGS[0]} does not list the healthcheck subcommand: $out" "rebuild the binary" ;;
esac
if docker run --rm --name "$CHECK" "${TAGS[0]}" healthcheck --url http://127.0.0.1:1/readyz >/dev/null 2>&1; then
    fail "/gitspy healthcheck in ${TAGS[0]} succeeded against a closed port" ""
fi
echo "built ${TAGS[*]} from $BIN (gitspy ${VERSION:-unknown}, $(docker image inspect -f '{{.Size}}' "${TAGS[0]}") bytes)"
