# One exact Python release on Debian 12 (bookworm): a rebuild gets the same interpreter.
FROM python:3.11.15-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin neu \
    && install -d -o neu -g neu /var/lib/neu-gateway

WORKDIR /opt/neu-gateway
# Dependencies at the exact versions in the pin file, in their own layer.
COPY deploy/docker/requirements.txt ./requirements.txt
RUN pip install --no-cache-dir -r requirements.txt
# The project itself, resolving nothing more; built with a pinned setuptools, which is then
# removed (the gateway does not need it at run time).
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
RUN pip install --no-cache-dir setuptools==84.2.1 \
    && pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip uninstall --yes setuptools \
    && rm -rf build neu_gateway.egg-info

# The image's config (deploy/docker/gateway.yaml): listeners on 0.0.0.0, callers required,
# secrets from the environment and /run/secrets. Mount your own over it to change it, and
# keep the HEALTHCHECK below on the port it serves /readyz on.
COPY deploy/docker/gateway.yaml /etc/neu-gateway/gateway.yaml
# The callbacks outbox when it is SQLite (sqlite:///var/lib/neu-gateway/outbox.db).
VOLUME ["/var/lib/neu-gateway"]
USER neu
# 8080: the API for your services (and /healthz, /readyz, /metrics); 8081: the callbacks
# listener for the platform.
EXPOSE 8080 8081
# Ready, not just alive: /readyz answers 503 while draining after SIGTERM or while a backend
# (Redis) is down.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["neu-gateway"]
CMD ["serve", "-c", "/etc/neu-gateway/gateway.yaml"]
