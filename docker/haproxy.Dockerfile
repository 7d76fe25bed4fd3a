# The load balancer in front of several `gitspy serve`, built offline by
# docker/build-haproxy-image.sh from the host's HAProxy (no registry is needed: FROM scratch plus a
# tarball the script assembles).
#
# Contents: /usr/sbin/haproxy, every library `ldd` lists for it plus the dynamic loader, a minimal
# /etc/passwd, /etc/group and /etc/nsswitch.conf (service names resolve through Docker's
# /etc/hosts and /etc/resolv.conf), /tmp, and the default configuration
# /usr/local/etc/haproxy/haproxy.cfg (docker/haproxy/gitspy.cfg: POST /webhooks only on :8080,
# the admin addresses on :8081). Compose mounts its own over it when it differs. No shell.
FROM scratch
ADD rootfs.tar /
USER 999:999
EXPOSE 8080 8081
ENTRYPOINT ["/usr/sbin/haproxy"]
CMD ["-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
