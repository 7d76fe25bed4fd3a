#!/usr/bin/env bash
# Builds an offline Prometheus image from the host's Debian `prometheus` package, with
# docker/prometheus/prometheus.yml and alerts.yml baked in, for machines that reach no registry.
#
# Usage: docker/build-prometheus-image.sh [TAG...]      (default tag: gitspy-prometheus:local)
#
# Needs: a Docker daemon that answers (scripts/setup-docker.sh), prometheus and promtool
#        (`apt-get install -y prometheus`), ldd (libc-bin), tar.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$#" -gt 0 ]; then TAGS=("$@"); else TAGS=("gitspy-prometheus:local"); fi

fail() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 1; }

PROM="$(command -v prometheus || true)"
[ -n "$PROM" ] || fail "prometheus is not on PATH" "apt-get install -y prometheus"
command -v promtool >/dev/null || fail "promtool is not on PATH" "apt-get install -y prometheus"
command -v ldd >/dev/null || fail "ldd is not installed" "apt-get install -y libc-bin"
command -v docker >/dev/null || fail "the docker client is not installed" "apt-get install -y docker.io"
timeout 10 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1 \
    || fail "the Docker daemon does not answer" "scripts/setup-docker.sh"
promtool check rules "$HERE/prometheus/alerts.yml" >/dev/null \
    || fail "docker/prometheus/alerts.yml does not load" "promtool check rules docker/prometheus/alerts.yml"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc/prometheus" "$ROOT/prometheus" "$ROOT/tmp"
cp -L "$PROM" "$ROOT/usr/local/bin/prometheus"
ldd "$ROOT/usr/local/bin/prometheus" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' \
    | while read -r lib; do
        mkdir -p "$ROOT$(dirname "$lib")"
        cp -L "$lib" "$ROOT$lib"
    done
cp "$HERE/prometheus/prometheus.yml" "$HERE/prometheus/alerts.yml" "$ROOT/etc/prometheus/"
chmod 1777 "$ROOT/tmp"
tar --numeric-owner --owner=0 --group=0 -C "$ROOT" -cf "$WORK/rootfs.tar" --exclude=./prometheus .
# The TSDB directory belongs to nobody (65534), the user Prometheus runs as.
tar --numeric-owner --owner=65534 --group=65534 -C "$ROOT" -rf "$WORK/rootfs.tar" ./prometheus
cp "$HERE/prometheus.Dockerfile" "$WORK/Dockerfile"
args=()
for t in "${TAGS[@]}"; do args+=(-t "$t"); done
docker build -q "${args[@]}" "$WORK" >/dev/null
for t in "${TAGS[@]}"; do echo "built $t"; done
