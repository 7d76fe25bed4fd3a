# PostgreSQL for the multi-host deployment, built offline by docker/build-postgres-image.sh from
# the host's PostgreSQL (no registry is needed: FROM scratch plus a tarball the script assembles).
#
# Contents: postgres and pg_isready (for the healthcheck), the server's modules, share files and
# the system time zones, every library `ldd` lists plus the loader, a minimal /etc/passwd, and a
# cluster initialised at build time in /var/lib/postgresql/data (owned by uid/gid 999, the user it
# runs as: initdb needs a shell, which the image does not have). The cluster has a role and a
# database named by the build (default `gitspy`, password authentication over TCP, scram-sha-256).
# A named volume mounted on the data directory starts as a copy of it.
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/lib/postgresql/bin \
    PGDATA=/var/lib/postgresql/data \
    TZ=UTC
USER 999:999
EXPOSE 5432
HEALTHCHECK --interval=2s --timeout=3s --start-period=5s --retries=15 CMD ["/usr/lib/postgresql/bin/pg_isready", "-h", "127.0.0.1", "-p", "5432"]
# Fast shutdown (roll back open transactions, close sessions), as the official image does: the
# default SIGTERM waits for every client to disconnect.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/lib/postgresql/bin/postgres"]
CMD ["-D", "/var/lib/postgresql/data"]
