// The SuperApp simulator page: reads the sandbox's /sandbox/ controls, and redraws what
// changed when the sandbox's event stream says so (or, without one, every POLL_MS).
"use strict";

(() => {
  const POLL_MS = 2000;
  const STATUS_NAMES = {
    1: "processing", 2: "succeeded", 3: "failed", 4: "expired", 5: "canceled", 6: "closed",
  };
  const state = {
    apps: [],
    users: [],
    user: sessionStorage.getItem("simulator.user") || "",
    app: "",
    offsetMs: 0, // the sandbox's clock minus this browser's
  };
  const $ = (id) => document.getElementById(id);

  // A small element builder: h("p", {class: "x"}, "text", child).
  function h(tag, attrs, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") element.textContent = value;
      else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) element.append(child);
    }
    return element;
  }

  const now = () => Date.now() + state.offsetMs;

  async function api(path, fields) {
    const options = fields ? { method: "POST", body: new URLSearchParams(fields) } : {};
    const response = await fetch(path, options);
    const body = await response.json();
    if (!body.responseHeader || body.responseHeader.status !== 200) {
      throw new Error(body.responseHeader ? body.responseHeader.msg : `HTTP ${response.status}`);
    }
    const answer = body.response;
    if (answer && typeof answer.now === "number") state.offsetMs = answer.now - Date.now();
    return answer;
  }

  function announce(text) {
    $("announcer").textContent = text;
  }

  function say(id, text, bad) {
    const element = $(id);
    element.textContent = text;
    element.classList.toggle("bad", Boolean(bad));
  }

  function clockText(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function countdown(ms) {
    const total = Math.max(0, Math.round(ms / 1000));
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = String(total % 60).padStart(2, "0");
    return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
  }

  function isWebUrl(text) {
    return /^https?:\/\/[^\s]+$/i.test(text || "");
  }

  // Keeps `list`'s children in the order of `items`, making, updating and removing them by
  // key, so a redraw never takes the focus from a control that is still there.
  function reconcile(list, items, keyOf, create, update) {
    const existing = new Map([...list.children].map((child) => [child.dataset.key, child]));
    let previous = null;
    for (const item of items) {
      const key = String(keyOf(item));
      let element = existing.get(key);
      if (element) existing.delete(key);
      else {
        element = create(item);
        element.dataset.key = key;
      }
      update(element, item);
      const expected = previous ? previous.nextElementSibling : list.firstElementChild;
      if (expected !== element) list.insertBefore(element, expected);
      previous = element;
    }
    for (const element of existing.values()) element.remove();
  }

  // Users and the mini app's login

  function renderApps(apps) {
    state.apps = apps;
    if (!apps.includes(state.app)) state.app = apps[0] || "";
    const select = $("current-app");
    reconcile(select, apps, (appid) => appid, (appid) => h("option", { value: appid, text: appid }), () => {});
    select.value = state.app;
    $("app-field").hidden = apps.length < 2;
  }

  function userLabel(user) {
    return `${user.name} (${user.country} ${user.phone})`;
  }

  function renderUsers(users) {
    state.users = users;
    if (state.user && !users.some((user) => user.user === state.user)) chooseUser("");
    if (!state.user && users.length) chooseUser(users[users.length - 1].user);
    const select = $("current-user");
    const options = users.length ? users : [{ user: "", name: "" }];
    reconcile(
      select,
      options,
      (user) => user.user,
      (user) => h("option", { value: user.user }),
      (option, user) => {
        option.textContent = user.user ? userLabel(user) : "No user yet: create one";
      },
    );
    select.value = state.user;
    const current = users.find((user) => user.user === state.user);
    $("user-details").textContent = current
      ? `openId in ${state.app}: ${current.openIds[state.app] || "?"}`
      : "";
    $("phone-owner").textContent = current ? `${current.name}'s phone` : "No user on this phone";
  }

  function chooseUser(user) {
    if (user !== state.user) {
      state.user = user;
      sessionStorage.setItem("simulator.user", user);
      $("login").hidden = true;
    }
  }

  async function createUser(event) {
    event.preventDefault();
    const form = $("new-user");
    try {
      const user = await api("/sandbox/users", {
        name: form.elements.name.value,
        phone: form.elements.phone.value,
        country: form.elements.country.value,
      });
      chooseUser(user.user);
      say("new-user-status", `Created ${user.name}; on the phone now.`);
      form.elements.name.value = "";
      form.elements.phone.value = "";
      await refresh();
    } catch (error) {
      say("new-user-status", error.message, true);
    }
  }

  async function openMiniApp() {
    if (!state.user) {
      say("open-status", "Create or pick a user first.", true);
      return;
    }
    const button = $("open-mini-app");
    button.disabled = true;
    say("open-status", "Opening…");
    try {
      const opened = await api("/sandbox/open-mini-app", {
        user: state.user,
        appid: state.app,
        backend_url: $("backend-url").value.trim(),
      });
      $("login-code").textContent = opened.code;
      $("code-expiry").dataset.expiresAt = opened.expiresAt;
      const backend = opened.backend;
      $("backend-result").textContent = !backend
        ? ""
        : backend.error
          ? `Sending it to ${backend.url} failed: ${backend.error}`
          : `Sent to ${backend.url}: HTTP ${backend.httpStatus}`;
      $("login").hidden = false;
      say("open-status", "The mini app has its one-time code.");
      tick();
    } catch (error) {
      say("open-status", error.message, true);
    } finally {
      button.disabled = false;
    }
  }

  async function copyCode() {
    const code = $("login-code").textContent;
    try {
      await navigator.clipboard.writeText(code);
      say("backend-result", "Code copied.");
    } catch {
      const range = document.createRange();
      range.selectNodeContents($("login-code"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      say("backend-result", "Copying is not allowed here: the code is selected, press Ctrl+C.");
    }
  }

  // Cashier

  function createTrade(view) {
    const titleId = `trade-${view.detail.tradeNo}`;
    const item = h("li", { "data-testid": "trade", class: "trade", tabindex: "-1", "aria-labelledby": titleId });
    item.append(
      h(
        "div",
        { class: "trade-head" },
        h("h3", { id: titleId, class: "out-trade-no" }),
        h("span", { class: "amount" }),
        h("span", { class: "badge", "data-testid": "trade-status" }),
      ),
      h("p", { class: "meta description" }),
      h("p", { class: "meta ids" }),
      h("div", { class: "actions" }),
      h("p", { class: "meta notify" }),
      h("ol", { class: "attempts", "aria-label": "Callback attempts" }),
    );
    return item;
  }

  function updateTrade(item, view) {
    const detail = view.detail;
    const status = STATUS_NAMES[detail.transactionStatus] || String(detail.transactionStatus);
    const titleId = `trade-${detail.tradeNo}`;
    item.querySelector(".out-trade-no").textContent = detail.outTradeNo;
    item.querySelector(".amount").textContent = `${detail.amountStrWithYuan} ${detail.currency}`;
    const badge = item.querySelector(".badge");
    if (item.dataset.status && item.dataset.status !== status) {
      announce(`Trade ${detail.outTradeNo}: ${status}`);
    }
    item.dataset.status = status;
    badge.dataset.status = status;
    badge.textContent = status;
    item.querySelector(".description").textContent = detail.description || "";
    item.querySelector(".ids").textContent = `tradeNo ${detail.tradeNo} · created ${clockText(detail.ctime)}`;
    const actions = item.querySelector(".actions");
    if (status === "processing" && !actions.children.length) {
      const act = (label, className, path, fields) =>
        h("button", {
          type: "button",
          class: className,
          "aria-describedby": titleId,
          text: label,
          onclick: () => tradeAction(item, path, fields),
        });
      const base = `/sandbox/trades/${encodeURIComponent(detail.tradeNo)}`;
      actions.append(
        act("Pay", "pay", `${base}/pay`, { result: "succeeded" }),
        act("Fail", "fail", `${base}/pay`, { result: "failed" }),
        act("Let expire", "expire", `${base}/expire`, {}),
      );
    } else if (status !== "processing" && actions.children.length) {
      const hadFocus = actions.contains(document.activeElement);
      actions.replaceChildren();
      if (hadFocus) item.focus();
    }
    const notified = detail.notifySuccess === true
      ? " · delivered"
      : detail.notifySuccess === false ? " · not delivered" : "";
    item.querySelector(".notify").textContent = `Callbacks to ${view.notifyUrl}${notified}`;
    const attempts = item.querySelector(".attempts");
    const last = view.notifications.length - 1;
    attempts.replaceChildren(
      ...view.notifications.map((attempt, index) => attemptItem(attempt, index === last)),
    );
  }

  function attemptItem(attempt, isLast) {
    const name = attempt.attempt === 1 ? "Attempt 1" : `Retry ${attempt.attempt - 1}`;
    const status = STATUS_NAMES[attempt.transactionStatus] || attempt.transactionStatus;
    let outcome;
    let className = "";
    if (attempt.httpStatus !== undefined) {
      outcome = `HTTP ${attempt.httpStatus}`;
      className = attempt.httpStatus >= 200 && attempt.httpStatus < 300 ? "ok" : "bad";
    } else if (attempt.error) {
      outcome = `no answer (${attempt.error})`;
      className = "bad";
    } else {
      outcome = "sending…";
    }
    const item = h(
      "li",
      { "data-testid": "callback-attempt" },
      `${clockText(attempt.at)} · ${name} (${status}) → `,
      h("span", { class: className, text: outcome }),
    );
    if (isLast && attempt.nextAttemptAt && !attempt.gaveUp) {
      item.append(" · next retry in ", h("span", { class: "countdown", "data-expires-at": attempt.nextAttemptAt }));
    }
    if (attempt.gaveUp) item.append(" · gave up");
    return item;
  }

  async function tradeAction(item, path, fields) {
    // Not `disabled`: that would drop the focus, which moves to the trade once it is final.
    if (item.dataset.busy) return;
    item.dataset.busy = "1";
    const buttons = [...item.querySelectorAll(".actions button")];
    for (const button of buttons) button.setAttribute("aria-disabled", "true");
    try {
      await api(path, fields);
      await refresh();
    } catch (error) {
      announce(error.message);
      item.querySelector(".description").textContent = error.message;
    } finally {
      delete item.dataset.busy;
      for (const button of buttons) button.removeAttribute("aria-disabled");
    }
  }

  function renderTrades(trades) {
    reconcile($("trades"), trades, (view) => view.detail.tradeNo, createTrade, updateTrade);
    $("no-trades").hidden = trades.length > 0;
  }

  // Phone screen

  function textOn(hex) {
    const value = parseInt(hex, 16);
    const [r, g, b] = [(value >> 16) & 255, (value >> 8) & 255, value & 255];
    return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#1c2030" : "#ffffff";
  }

  function createActivity() {
    return h(
      "li",
      { class: "card", "data-testid": "activity" },
      h(
        "span",
        { class: "card-head" },
        h("span", { class: "icon", "aria-hidden": "true", "data-testid": "activity-icon" }),
        h("span", { class: "icon-url", "data-testid": "activity-icon-url" }),
      ),
      h("span", { class: "title" }),
      h("span", { class: "text" }),
      h("span", { class: "validity" }, "ends in ", h("span", { class: "countdown", "data-remove-at-zero": "" })),
    );
  }

  // The icon is drawn here, never fetched: the page loads nothing from elsewhere (and its
  // policy, img-src 'self' data:, would refuse it). Its URL shows as text, in full on hover.
  function updateActivity(card, activity) {
    const color = /^[0-9a-f]{6}$/i.test(activity.color) ? activity.color : "FFFFFF";
    card.style.background = `#${color}`;
    card.style.color = textOn(color);
    const [initial] = Array.from((activity.title || "").trim() || "?");
    card.querySelector(".icon").textContent = initial.toUpperCase();
    const url = card.querySelector(".icon-url");
    url.textContent = activity.iconUrl ? activity.iconUrl.replace(/^https?:\/\//i, "") : "no icon";
    url.title = activity.iconUrl ? `iconUrl: ${activity.iconUrl}` : "no iconUrl";
    card.querySelector(".title").textContent = activity.title;
    card.querySelector(".text").textContent = activity.text;
    card.querySelector(".countdown").dataset.expiresAt = activity.expiresAt;
  }

  function notificationItem(message) {
    const body = [
      h("span", { class: "title", text: message.title }),
      h("span", { class: "text", text: message.text }),
      h("span", { class: "when", text: `${message.appId} · ${clockText(message.ctime)}` }),
    ];
    let target;
    if (String(message.navigateType) === "2" && isWebUrl(message.url)) {
      target = h("a", { class: "notification", href: message.url, target: "_blank", rel: "noopener noreferrer" }, ...body);
    } else if (String(message.navigateType) === "1") {
      const link = message.link || "(the mini app's home page)";
      target = h(
        "button",
        {
          type: "button",
          class: "notification",
          onclick: () => {
            $("phone-toast").textContent = `Opening mini app ${message.appId} at ${link}`;
          },
        },
        ...body,
      );
    } else {
      target = h("div", { class: "notification" }, ...body);
    }
    return h("li", { "data-testid": "notification" }, target);
  }

  function renderPhone(phone) {
    const activities = phone ? phone.activities.filter((activity) => activity.expiresAt > now()) : [];
    const notifications = phone ? phone.notifications : [];
    reconcile($("activities"), activities, (activity) => activity.key, createActivity, updateActivity);
    reconcile($("notifications"), notifications, (message) => message.key, notificationItem, () => {});
    $("no-activities").hidden = activities.length > 0;
    $("no-notifications").hidden = notifications.length > 0;
  }

  // Request log

  // Where a caller's own canonical string first differs from what the platform signed.
  // `pairs` are [key, value] in signing order, the secret's value null: whatever the caller
  // put there (its secret, or the mask) is skipped up to the next key, never compared.
  function firstDifference(pairs, pasted) {
    let position = 0;
    for (let index = 0; index < pairs.length; index += 1) {
      const [key, value] = pairs[index];
      const expected = value === null ? `${key}=` : `${key}=${value}`;
      for (let offset = 0; offset < expected.length; offset += 1) {
        if (pasted[position + offset] !== expected[offset]) {
          return { position: position + offset, key, expected: expected.slice(offset) };
        }
      }
      position += expected.length;
      if (value === null) {
        if (index + 1 === pairs.length) return null;
        const next = `${pairs[index + 1][0]}=`;
        const found = pasted.indexOf(next, position);
        if (found < 0) return { position, key, expected: `(the secret, then) ${next}` };
        position = found;
      }
    }
    return position < pasted.length ? { position, key: null, expected: "(the end)" } : null;
  }

  function excerpt(text) {
    return text.length > 24 ? `${text.slice(0, 24)}…` : text;
  }

  function compare(entry, textarea, output) {
    const pasted = textarea.value.replace(/\r?\n$/, "");
    const difference = firstDifference(entry.signedPairs, pasted);
    if (!difference) {
      output.textContent = "No difference: the strings match (the secret's value is not compared).";
      return;
    }
    const got = pasted.slice(difference.position);
    output.replaceChildren(
      `First difference at position ${difference.position} (counting from 0)`,
      difference.key ? ` in ${difference.key}: ` : ": ",
      "the platform signed ",
      h("mark", { text: excerpt(difference.expected) }),
      ", yours has ",
      h("mark", { text: got ? excerpt(got) : "(the end)" }),
      ".",
    );
  }

  function requestItem(entry) {
    const item = h(
      "li",
      { class: "request", "data-testid": "request" },
      h(
        "div",
        { class: "request-head" },
        h("span", { class: "when", text: clockText(entry.at) }),
        h("span", { class: "endpoint", text: `${entry.method} ${entry.endpoint}` }),
        h("span", { class: "badge", "data-verdict": entry.verdict, text: entry.verdict }),
      ),
      h("p", { class: "msg", text: `${entry.status} ${entry.msg}` }),
    );
    const rows = Object.entries(entry.params).map(([key, value]) =>
      h("tr", {}, h("th", { scope: "row", text: key }), h("td", { text: value })),
    );
    if (rows.length) {
      item.append(
        h(
          "details",
          {},
          h("summary", { text: `Parameters (${rows.length})` }),
          h("table", { class: "params" }, h("tbody", {}, ...rows)),
          entry.truncated ? h("p", { class: "hint", text: "Long values are cut short here." }) : null,
        ),
      );
    }
    if (entry.canonical !== null) {
      const fieldId = `paste-${entry.id}`;
      const textarea = h("textarea", { id: fieldId, spellcheck: "false", autocomplete: "off" });
      const output = h("output", { class: "difference", for: fieldId, "data-testid": "difference" });
      item.append(
        h(
          "details",
          { class: "sign-error" },
          h("summary", { text: "What the platform signed" }),
          h("pre", { class: "canonical", "data-testid": "canonical", text: entry.canonical }),
          h("div", { class: "field" },
            h("label", { for: fieldId, text: "Your canonical string (paste it to find the first difference)" }),
            textarea),
          h("button", { type: "button", text: "Compare", onclick: () => compare(entry, textarea, output) }),
          " ",
          output,
        ),
      );
    }
    return item;
  }

  function renderRequests(entries) {
    reconcile($("request-log"), entries, (entry) => entry.id, requestItem, () => {});
    $("no-requests").hidden = entries.length > 0;
  }

  // Time: countdowns, the phone's clock

  function tick() {
    const time = now();
    $("phone-clock").textContent = new Date(time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    let removed = false;
    for (const element of document.querySelectorAll("[data-expires-at]")) {
      const left = Number(element.dataset.expiresAt) - time;
      if (left <= 0 && element.hasAttribute("data-remove-at-zero")) {
        element.closest("li").remove();
        removed = true;
        continue;
      }
      if (element.id === "code-expiry") {
        element.textContent = left > 0 ? `Expires in ${countdown(left)}` : "Expired: open the mini app again";
      } else {
        element.textContent = left > 0 ? countdown(left) : "now";
      }
    }
    if (removed) {
      $("no-activities").hidden = $("activities").children.length > 0;
    }
  }

  // Keeping up to date: events from the sandbox, or polling without them

  let refreshing = null;
  let again = false;

  let first = true;

  async function refreshOnce() {
    const [apps, users, requests] = await Promise.all([
      api("/sandbox/apps"),
      api("/sandbox/users"),
      api("/sandbox/requests"),
    ]);
    renderApps(apps.apps);
    renderUsers(users.users);
    if (first && users.users.length) $("new-user-box").open = false;
    first = false;
    renderRequests(requests.requests);
    if (state.user) {
      const who = encodeURIComponent(state.user);
      const [trades, phone] = await Promise.all([
        api(`/sandbox/trades?user=${who}`),
        api(`/sandbox/phone?user=${who}`),
      ]);
      renderTrades(trades.trades);
      renderPhone(phone);
    } else {
      renderTrades([]);
      renderPhone(null);
    }
    tick();
  }

  function refresh() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      do {
        again = false;
        try {
          await refreshOnce();
        } catch (error) {
          setLive("error", `Cannot reach the sandbox: ${error.message}`);
        }
      } while (again);
    })().finally(() => {
      refreshing = null;
    });
    return refreshing;
  }

  let poller = null;

  function setLive(mode, text) {
    const live = $("live");
    live.dataset.state = mode;
    live.textContent = text;
  }

  function startPolling(why) {
    setLive("polling", `Polling every ${POLL_MS / 1000} s (${why})`);
    if (!poller) poller = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    clearInterval(poller);
    poller = null;
  }

  function connect() {
    if (typeof EventSource !== "function") {
      startPolling("no event stream in this browser");
      return;
    }
    const source = new EventSource("/sandbox/events");
    source.addEventListener("hello", () => {
      stopPolling();
      setLive("live", "Live");
      refresh();
    });
    source.addEventListener("change", () => refresh());
    // EventSource reconnects by itself; until it does, poll.
    source.addEventListener("error", () => startPolling("event stream lost"));
  }

  function start() {
    $("new-user").addEventListener("submit", createUser);
    $("current-user").addEventListener("change", (event) => {
      chooseUser(event.target.value);
      refresh();
    });
    $("current-app").addEventListener("change", (event) => {
      state.app = event.target.value;
      refresh();
    });
    $("open-mini-app").addEventListener("click", openMiniApp);
    $("copy-code").addEventListener("click", copyCode);
    setInterval(tick, 1000);
    refresh();
    connect();
  }

  // For the page's own tests.
  window.simulator = { firstDifference, refresh };
  start();
})();
