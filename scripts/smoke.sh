#!/usr/bin/env bash
# The main job: the smoke scenario (20 signed webhooks, each judged) against a GitSpy that the
# harness starts and tears down itself. Builds both binaries; installs redis-server when neither it
# nor a Docker engine with the Redis image is there (as root), or says exactly what to install.
# Extra arguments go to `gitspy-chaos run` (e.g. --backend process, --report-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is missing: install a Rust toolchain (https://rustup.rs)" >&2
  exit 2
fi
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (apt)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  elif ! docker image inspect gitspy-redis:7 >/dev/null 2>&1; then
    echo "error: no redis-server and no Docker image gitspy-redis:7" >&2
    echo "hint: sudo apt-get install -y redis-server   (or docker/build-redis-image.sh with a running dockerd)" >&2
    exit 2
  fi
fi

cargo build --quiet --bins
exec target/debug/gitspy-chaos run scenarios/01-smoke.yaml "$@"
