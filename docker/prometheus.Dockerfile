# An offline Prometheus image, built by docker/build-prometheus-image.sh from Debian's `prometheus`
# package on the host (no registry is needed: FROM scratch plus a tarball the script assembles).
# The configuration (docker/prometheus/prometheus.yml: scrape the server and both workers) and
# the alert rules (docker/prometheus/alerts.yml) are baked in.
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/bin
WORKDIR /prometheus
USER 65534:65534
EXPOSE 9090
CMD ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]
