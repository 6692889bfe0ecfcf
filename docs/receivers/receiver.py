"""An order service receiving neu-gateway's signed deliveries, with Python's standard library.

Each payment the gateway confirmed arrives as a POST signed as Standard Webhooks sign: the
service checks the signature over the exact bytes received before it trusts a word of them.

    PORT=9000 NEU_SIGNING_SECRET=whsec_... python3 receiver.py

NEU_SIGNING_SECRET is the secret in the app's callbacks.signing_secret_file, shared with the
gateway and no one else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["NEU_SIGNING_SECRET"]
if not SECRET.startswith("whsec_"):
    sys.exit("NEU_SIGNING_SECRET must be a whsec_... secret")
KEY = base64.b64decode(SECRET[len("whsec_") :], validate=True)
# A delivery recorded and sent again later is refused once this much time has passed.
TOLERANCE_S = 5 * 60
# A trade's detail is a few hundred bytes; nothing near this is a delivery.
MAX_BODY = 1 << 20


class Refused(Exception):
    """Why a request is not a delivery signed with our secret."""


def verify(headers: dict[str, str], body: bytes) -> str:
    """The delivery's webhook-id, once its headers and signature hold; Refused otherwise."""
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (message_id and timestamp and signatures):
        raise Refused("missing webhook-id, webhook-timestamp or webhook-signature")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise Refused("webhook-timestamp is not unix seconds")
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        raise Refused("webhook-timestamp is more than 5 minutes from now")
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(KEY, signed, hashlib.sha256).digest()
    expected = ("v1," + base64.b64encode(digest).decode()).encode()
    # Several during a rotation of the secret: one made with ours is enough. compare_digest
    # takes as long wherever the bytes differ, so the time taken tells nothing of them.
    if not any(hmac.compare_digest(expected, given.encode()) for given in signatures.split(" ")):
        raise Refused("no signature matches")
    return message_id


class Deliveries(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        try:
            length = self.headers.get("Content-Length", "")
            if not re.fullmatch(r"[0-9]{1,7}", length) or int(length) > MAX_BODY:
                raise Refused("no Content-Length, or a body over 1 MiB")
            # The bytes as sent: the signature is over them, not over any parse of them.
            body = self.rfile.read(int(length))
            message_id = verify({name.lower(): v for name, v in self.headers.items()}, body)
        except Refused as refused:
            print(f"refused {refused}", flush=True)
            self.send_response(400)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(f"{refused}\n".encode())
            return
        # Only now parse the JSON, check amount and currency against the order, and act once
        # per webhook-id (the gateway sends a delivery again until it gets a 2xx): e.g. insert
        # it into a table with a unique key in the transaction that marks the order paid.
        print(f"verified {message_id} {body.decode(errors='replace')}", flush=True)
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "9000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Deliveries)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
