"""The commented gateway.yaml that `neu-gateway init` writes for a real app.

It reads its secrets from the files in FILES, so it is valid as written once they are made;
the placeholders (appid, the platform's domain) still need the app's own. Files, not
environment variables: a file is watched, so a secret written to it is taken by the running
gateway, while a process never sees its environment change (rotation would be a restart).
"""

from __future__ import annotations

from string import Template

from gateway.cli.schema_file import SCHEMA_FILE, modeline
from gateway.config import placeholders

# The files the starter names, with what each holds: `init` lists them as the next step.
FILES = (
    ("/run/secrets/myapp", "the app secret the platform gave you (apps.myapp.secret_file)"),
    (
        "/run/secrets/orders-token",
        "the bearer token of caller orders, 16 characters or more: openssl rand -hex 32",
    ),
)

# Its first line points editors at the schema `init` writes beside it.
STARTER_CONFIG = modeline(SCHEMA_FILE.name) + Template("""\
# neu-gateway configuration, written by `neu-gateway init`. Every option is described in
# docs/configuration.md, the configuration reference (and in gateway.schema.json, beside this
# file). Put in your appid and the platform's domain, write the files it names
# (/run/secrets/myapp, /run/secrets/orders-token; mode 0600), then:
#   neu-gateway check-config -c gateway.yaml
#   neu-gateway serve -c gateway.yaml

# Where your services reach the gateway. 127.0.0.1 serves this machine only; any other
# address (0.0.0.0 in a container) is refused unless callers are configured, as below.
listen: {host: 127.0.0.1, port: 8080}

apps:
  myapp:                # the app's name here: X-Neu-App and callers' `apps` use it
    appid: $appid   # your mini app's own appid, from the platform
    # The app secret, never written in this file: read from a file (a Docker or Kubernetes
    # secret), watched, so a new secret written there is taken without a restart...
    secret_file: /run/secrets/myapp
    # ...or from an environment variable instead, which a running gateway never sees change:
    # secret_env: NEU_SECRET_MYAPP
    # The platform's base URL, https://{domain}; the gateway appends /neuopenapi/...
    # (`upstream: sandbox` runs the embedded emulator instead, to try things first).
    upstream: $upstream
    # Payment callbacks of this app; uncomment with the `callbacks:` block below. Deliveries
    # to your service are signed (Standard Webhooks) with the secret in signing_secret_file:
    # echo "whsec_$$(openssl rand -base64 32)" > /run/secrets/myapp-signing
    # callbacks:
    #   deliver_to: http://orders.internal:9000/payments
    #   signing_secret_file: /run/secrets/myapp-signing

# Who may call. Each caller sends `Authorization: Bearer <its token>` and may use only its
# apps and the routes it is allowed (METHOD /neuopenapi/path, * as a wildcard). A token is
# read from a file (token_file, watched as secret_file is) or an environment variable
# (token_env), one per caller.
callers:
  orders:
    token_file: /run/secrets/orders-token
    apps: [myapp]
    allow:
      - "POST /neuopenapi/pay/transactions/*"
      - "GET /neuopenapi/pay/transactions/tradedetail"
# Requests from these networks need no token (the backend beside a sidecar, say):
# trusted_networks: [127.0.0.1/32]

# Payment callbacks (docs/callbacks.md): the platform POSTs each payment's outcome
# to the trade's notifyUrl; make it https://<public name of this listener>/callbacks/myapp/pay.
# The gateway verifies it, confirms it with tradedetail and delivers it once to deliver_to.
# callbacks:
#   listen: {host: 0.0.0.0, port: 8081}   # the platform reaches this; nothing else is served
#   store: sqlite:///var/lib/neu-gateway/outbox.db

# Several replicas share logins (and the callbacks outbox) through Redis:
# cache:
#   backend: redis
#   url: redis://:$${REDIS_PASSWORD}@redis.internal:6379/0

timeouts: {connect_s: 3, total_s: 15}
""").substitute(appid=placeholders.APPID, upstream=placeholders.UPSTREAM)
