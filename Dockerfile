# One exact Python release on Debian 12 (bookworm): a rebuild gets the same interpreter.
# Build with scripts/build-image (Docker, or Podman with --format docker).

# The project's wheel, built apart: the image itself holds no copy of the source tree, so
# `python -m gateway` anywhere in it runs the installed package.
FROM python:3.11.15-slim-bookworm AS wheel
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
# With a pinned setuptools, resolving nothing else.
RUN pip install --no-cache-dir setuptools==84.2.1 \
    && pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheel .

FROM python:3.11.15-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A group of its own with a fixed number: the Kubernetes manifests' runAsGroup and fsGroup
# (10001) are this group, so files the gateway makes and Secrets it reads agree with it.
RUN groupadd --system --gid 10001 neu \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin neu \
    && install -d -o neu -g neu /var/lib/neu-gateway

# Dependencies at the exact versions in the pin file, in their own layer.
COPY deploy/docker/requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt
# The project itself, resolving nothing more.
COPY --from=wheel /wheel /tmp/wheel
RUN pip install --no-cache-dir --no-deps /tmp/wheel/*.whl && rm -rf /tmp/wheel

# The image's config (deploy/docker/gateway.yaml): listeners on 0.0.0.0, callers required,
# the app secret and a caller token from files under /run/secrets. Mount your own over it to
# change it, and keep the HEALTHCHECK below on the port it serves /readyz on.
COPY deploy/docker/gateway.yaml /etc/neu-gateway/gateway.yaml
# The working directory holds no code; it is also where the callbacks outbox lives when it is
# SQLite (sqlite:///var/lib/neu-gateway/outbox.db).
WORKDIR /var/lib/neu-gateway
VOLUME ["/var/lib/neu-gateway"]
USER neu
# 8080: the API for your services (and /healthz, /readyz, /metrics); 8081: the callbacks
# listener for the platform.
EXPOSE 8080 8081
# Ready, not just alive: /readyz answers 503 while the gateway starts and while it drains after
# SIGTERM. A shared backend (Redis) that is down shows in its checks and metrics, and makes it
# 503 only when admin.ready_requires names it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["neu-gateway"]
CMD ["serve", "-c", "/etc/neu-gateway/gateway.yaml"]
