// An internal service calling the platform through neu-gateway, with Node 20+ alone (its
// built-in fetch; no npm package).
//
// It never sees the app secret and never signs: the gateway adds appid, timestamp and sign.
// It names itself with its caller token and the app with X-Neu-App.
//
//     NEU_GATEWAY_URL=http://127.0.0.1:8080 NEU_GATEWAY_TOKEN=... node client.mjs LOGIN_CODE
//
// LOGIN_CODE is the one-time code the mini app's front end got from neu.login().

import { randomUUID } from "node:crypto";

const GATEWAY = process.env.NEU_GATEWAY_URL || "http://127.0.0.1:8080";
const TOKEN = process.env.NEU_GATEWAY_TOKEN; // this service's caller token, never the app secret
const APP = process.env.NEU_APP || "demo"; // the app's name in gateway.yaml, not its appid
// Where the platform posts the payment's outcome: the gateway's callbacks listener.
const NOTIFY_URL = process.env.NEU_NOTIFY_URL || "https://shop.example.com/superpay/notify";

// A refusal: the gateway's own (its `error` code) or the platform's (in the envelope).
class PlatformError extends Error {}

// One call through the gateway; the envelope's `response` when the platform said 200.
async function call(method, path, params) {
  const form = new URLSearchParams(params);
  const headers = {
    Authorization: `Bearer ${TOKEN}`,
    "X-Neu-App": APP,
    "X-Request-Id": `orders-${randomUUID()}`, // in the gateway's access log
  };
  const answer =
    method === "GET"
      ? await fetch(`${GATEWAY}${path}?${form}`, { headers, signal: AbortSignal.timeout(30000) })
      : await fetch(GATEWAY + path, { method, headers, body: form, signal: AbortSignal.timeout(30000) });
  const envelope = await answer.json();
  if (answer.status !== 200) {
    // The gateway's own errors: the same envelope, with a stable `error` code.
    throw new PlatformError(`${path}: ${answer.status} ${envelope.error}`);
  }
  const header = envelope.responseHeader;
  if (header.status !== 200) {
    // The platform answers its own refusals with HTTP 200 and the status in the envelope.
    throw new PlatformError(`${path}: ${header.status} ${header.msg}`);
  }
  return envelope.response;
}

async function main(code) {
  const login = await call("POST", "/neuopenapi/oauth/mini/accessToken", {
    code,
    grantType: "authorization_code",
    scope: "user.info",
  });
  const user = await call("GET", "/neuopenapi/oauth/mini/user/info", { accessToken: login.accessToken });
  const trade = await call("POST", "/neuopenapi/pay/transactions/trade", {
    outTradeNo: `order-${randomUUID().slice(0, 12)}`,
    amount: "1999",
    currency: "SAR",
    openId: user.openId,
    notifyUrl: NOTIFY_URL,
  });
  const detail = await call("GET", "/neuopenapi/pay/transactions/tradedetail", { tradeNo: trade.tradeNo });
  console.log(`openId=${user.openId} tradeNo=${trade.tradeNo} status=${detail.transactionStatus}`);
}

try {
  await main(process.argv[2]);
} catch (error) {
  if (!(error instanceof PlatformError)) throw error;
  console.error(`refused: ${error.message}`);
  process.exit(1);
}
