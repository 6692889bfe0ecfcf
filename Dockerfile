FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin neu \
    && install -d -o neu -g neu /var/lib/neu-gateway

WORKDIR /opt/neu-gateway
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir . && rm -rf /root/.cache

# The config (and any secret files it names) is mounted at /etc/neu-gateway; the callbacks
# outbox (callbacks.store: sqlite:///var/lib/neu-gateway/outbox.db) needs a persistent volume.
VOLUME ["/etc/neu-gateway", "/var/lib/neu-gateway"]
USER neu
# 8080: the egress API for your services; 8081: the callbacks listener for the platform.
EXPOSE 8080 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["neu-gateway"]
CMD ["serve", "-c", "/etc/neu-gateway/gateway.yaml"]
