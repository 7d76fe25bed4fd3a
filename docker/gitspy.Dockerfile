# The GitSpy image, built offline by docker/build-gitspy-image.sh from a binary of this workspace
# (no registry is needed: FROM scratch plus a tarball the script assembles).
#
# Contents: /gitspy (the `gitspy` binary, linked to glibc), every library `ldd` lists for it plus
# the dynamic loader, a minimal /etc/passwd, /etc/group and /etc/nsswitch.conf, /tmp, and /data
# owned by uid/gid 999, the user GitSpy runs as. There is no shell: healthchecks use
# `/gitspy healthcheck --url http://127.0.0.1:3000/readyz`.
FROM scratch
# ADD of a local tar extracts it and keeps the owners recorded in it (COPY would not: /data must
# belong to 999:999, and a named volume mounted on /data copies that ownership when created).
ADD rootfs.tar /
ENV GITSPY_DB=/data/gitspy.db \
    GITSPY_SPOOL_DIR=/data/spool \
    NO_COLOR=1
WORKDIR /data
USER 999:999
EXPOSE 3000 9091
ENTRYPOINT ["/gitspy"]
CMD ["serve"]
