// An order service receiving neu-gateway's signed deliveries, with Node 20+ alone (no npm
// package).
//
// Each payment the gateway confirmed arrives as a POST signed as Standard Webhooks sign: the
// service checks the signature over the exact bytes received before it trusts a word of them.
//
//     PORT=9000 NEU_SIGNING_SECRET=whsec_... node receiver.mjs
//
// NEU_SIGNING_SECRET is the secret in the app's callbacks.signing_secret_file, shared with the
// gateway and no one else.

import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";

const SECRET = process.env.NEU_SIGNING_SECRET || "";
if (!SECRET.startsWith("whsec_")) {
  console.error("NEU_SIGNING_SECRET must be a whsec_... secret");
  process.exit(1);
}
const KEY = Buffer.from(SECRET.slice("whsec_".length), "base64");
// A delivery recorded and sent again later is refused once this much time has passed.
const TOLERANCE_S = 5 * 60;
// A trade's detail is a few hundred bytes; nothing near this is a delivery.
const MAX_BODY = 1 << 20;

// Why a request is not a delivery signed with our secret.
class Refused extends Error {}

// The delivery's webhook-id, once its headers and signature hold (Node lowercases the names).
function verify(headers, body) {
  const messageId = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!messageId || !timestamp || !signatures) {
    throw new Refused("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^[0-9]{1,12}$/.test(timestamp)) {
    throw new Refused("webhook-timestamp is not unix seconds");
  }
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_S) {
    throw new Refused("webhook-timestamp is more than 5 minutes from now");
  }
  const digest = createHmac("sha256", KEY).update(`${messageId}.${timestamp}.`).update(body).digest("base64");
  const expected = Buffer.from(`v1,${digest}`);
  // Several during a rotation of the secret: one made with ours is enough. timingSafeEqual
  // takes as long wherever the bytes differ, so the time taken tells nothing of them (it
  // needs equal lengths; a signature's length is no secret).
  const matches = signatures.split(" ").some((given) => {
    const candidate = Buffer.from(given);
    return candidate.length === expected.length && timingSafeEqual(candidate, expected);
  });
  if (!matches) {
    throw new Refused("no signature matches");
  }
  return messageId;
}

// The bytes as sent: the signature is over them, not over any parse of them.
async function readBody(request) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    // Read to the end, so the answer reaches the sender, but keep no more than MAX_BODY.
    if (size <= MAX_BODY) chunks.push(chunk);
  }
  if (size > MAX_BODY) {
    throw new Refused("a body over 1 MiB");
  }
  return Buffer.concat(chunks);
}

const server = createServer(async (request, response) => {
  try {
    const body = await readBody(request);
    const messageId = verify(request.headers, body);
    // Only now parse the JSON, check amount and currency against the order, and act once per
    // webhook-id (the gateway sends a delivery again until it gets a 2xx): e.g. insert it into
    // a table with a unique key in the transaction that marks the order paid.
    console.log(`verified ${messageId} ${body.toString("utf8")}`);
    response.writeHead(204).end();
  } catch (error) {
    if (!(error instanceof Refused)) {
      // The request broke off, say: nothing to answer, and the server goes on.
      console.error(error);
      response.destroy();
      return;
    }
    console.log(`refused ${error.message}`);
    response.writeHead(400, { "Content-Type": "text/plain" }).end(`${error.message}\n`);
  }
});
server.listen(Number(process.env.PORT || 9000), "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
