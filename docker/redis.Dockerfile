# An offline stand-in for `redis:7-alpine`, built by docker/build-redis-image.sh from the host's
# redis-server (no registry is needed: FROM scratch plus a tarball the script assembles).
#
# Same contract as the official image as far as gitspy-chaos relies on it: `redis-server` and
# `redis-cli` on PATH under /usr/local/bin, data in /data (the working directory) writable by the
# user Redis runs as (uid/gid 999, like the official image's `redis` user), port 6379.
FROM scratch
# ADD of a local tar extracts it and keeps the owners recorded in it (COPY would not: /data must
# belong to 999:999).
ADD rootfs.tar /
ENV PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /data
USER 999:999
EXPOSE 6379
# redis-cli exits non-zero when nothing answers on the port; PONG or an error reply (e.g. LOADING)
# both mean the server process is up, which is all a container healthcheck should say.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["redis-cli", "-p", "6379", "ping"]
CMD ["redis-server", "--appendonly", "yes", "--protected-mode", "no", "--bind", "0.0.0.0", "--dir", "/data"]
