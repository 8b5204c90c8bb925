// What the dashboard's two pages share: the status vocabulary and its icons, formatting,
// the token, the connection indicator and the stream (/ws, or polling while it is down).
// Every value from the server goes into the page as text, never as markup.
"use strict";

const POLL_MS = 5000;

// Icons (lucide-style paths): the status is told by text and icon, not colour alone.
const ICONS = {
  pending: '<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/>',
  running: '<path d="M13 2 4 14h7l-1 8 9-12h-7z"/>',
  stuck: '<path d="M12 3 2 21h20z"/><path d="M12 10v5M12 18v.01"/>',
  crashed: '<path d="M7.9 2h8.2L22 7.9v8.2L16.1 22H7.9L2 16.1V7.9z"/><path d="m15 9-6 6M9 9l6 6"/>',
  failed: '<circle cx="12" cy="12" r="9"/><path d="M12 8v4M12 16v.01"/>',
  cancelled: '<circle cx="12" cy="12" r="9"/><path d="m15 9-6 6M9 9l6 6"/>',
  finished: '<circle cx="12" cy="12" r="9"/><path d="m8 12 3 3 5-6"/>',
  outdated: '<rect x="3" y="4" width="18" height="5" rx="1"/><path d="M5 9v10h14V9M10 13h4"/>',
  unknown: '<circle cx="12" cy="12" r="9"/><path d="M9.5 9a2.5 2.5 0 1 1 3.5 2.3c-.6.3-1 .9-1 1.7M12 17v.01"/>',
  cancel: '<circle cx="12" cy="12" r="9"/><path d="m15 9-6 6M9 9l6 6"/>',
};
const LABELS = {
  crashed: "Crashed", failed: "Failed", stuck: "Stuck", unknown: "Unknown", running: "Running",
  pending: "Pending", cancelled: "Cancelled", finished: "Finished", outdated: "Outdated",
};
// The urgency order (as `progresskit status`): what needs a person first, then what will
// finish soonest, then what waits, then what is over.
const URGENCY = Object.keys(LABELS);

function token() { return sessionStorage.getItem("progresskit-token") || ""; }

function takeTokenFromUrl() {
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("progresskit-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

// -- formatting -------------------------------------------------------------------------

function hms(seconds) {
  if (seconds == null || !isFinite(seconds) || seconds < 0) return "--:--:--";
  const s = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  return `${pad(h)}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "—";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.round((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d ${Math.round((seconds % 86400) / 3600)}h`;
}

function num(value) {
  if (value == null || !isFinite(value)) return "—";
  const a = Math.abs(value);
  if (a !== 0 && (a < 0.001 || a >= 1e6)) return value.toExponential(2);
  return Number(value.toPrecision(4)).toString();
}

function when(unix) {
  if (unix == null) return "unknown";
  return new Date(unix * 1000).toLocaleString();
}

function ago(unix) {
  return unix ? `${duration(Math.max(0, Date.now() / 1000 - unix))} ago` : "—";
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text != null) node.textContent = text;
  return node;
}

function icon(name) {
  const span = el("span");
  span.setAttribute("aria-hidden", "true");
  span.innerHTML = `<svg viewBox="0 0 24 24">${ICONS[name] || ICONS.unknown}</svg>`;
  return span.firstChild;
}

function setBadge(badge, status) {
  badge.dataset.status = status;
  badge.replaceChildren(icon(status), document.createTextNode(LABELS[status] || status));
}

// The name a run is shown by: one that names itself (a ComfyUI job: its job type) by that.
function displayName(view) {
  const details = view.run.progress.details;
  return (details && details.run_name) || view.name;
}

function eta(view) {
  const p = view.run.progress;
  if (!view.active) return "—";
  if (p.eta_seconds != null) {
    let text = `~${duration(p.eta_seconds)}`;
    if (p.eta_low_seconds != null && p.eta_high_seconds != null)
      text += ` (${duration(p.eta_low_seconds)}–${duration(p.eta_high_seconds)})`;
    // The source's own figure next to ours when it has one that differs (docs/eta.md).
    if (p.source_eta_seconds != null && p.source_eta_seconds !== p.eta_seconds)
      text += ` · source ~${duration(p.source_eta_seconds)}`;
    return text;
  }
  if (p.source_eta_seconds != null) return `~${duration(p.source_eta_seconds)} (source)`;
  return "unknown";
}

// The server's reason carries the silence as of when it was decided ("no sign of life for
// 42s", "last sign of life 3.0s ago"); between changes nothing is resent, so the text is
// recomputed from the run's last activity every tick, or it would freeze while the age grows.
const SILENCE = /(no sign of life for |last sign of life )\d+(?:\.\d+)?[dhms](?: \d+[dhms])?/g;

function reasonText(view) {
  const p = view.run.progress;
  let reason = p.error_message || view.run.reason || "";
  const last = view.run.last_activity;
  if (last != null && view.run.reason && reason === view.run.reason) {
    const silent = duration(Math.max(0, Date.now() / 1000 - last));
    reason = reason.replace(SILENCE, (_match, lead) => `${lead}${silent}`);
  }
  if (view.cancel_requested_at) reason = `Cancel requested ${when(view.cancel_requested_at)}. ${reason}`;
  return reason;
}

// Unknown progress (null) is "—" and a bar without a value, never 0%.
function setProgress(bar, fill, pct, view, label) {
  const p = view.run.progress.progress_percentage;
  const known = p != null;
  const percent = known ? Math.max(0, Math.min(100, p)) : 0;
  fill.style.width = `${percent}%`;
  if (known) bar.setAttribute("aria-valuenow", percent.toFixed(1));
  else bar.removeAttribute("aria-valuenow");
  bar.setAttribute("aria-label", label);
  pct.textContent = known ? `${percent.toFixed(1)}%` : "—";
}

function makeProgress() {
  const bar = el("div", "progress");
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  const fill = el("div", "bar");
  bar.appendChild(fill);
  return { bar, fill, pct: el("span", "pct") };
}

// -- the connection ---------------------------------------------------------------------------

function setConnection(mode, text) {
  const conn = document.getElementById("conn");
  conn.dataset.state = mode;
  conn.querySelector(".conn-text").textContent = text;
  document.body.dataset.stale = mode === "offline" ? "true" : "false";
}

// The stream: `onMessage` gets every message of /ws (batches unpacked); while the socket is
// down `poll()` runs every 5 s and the socket is tried again each time. `greeting()` is sent
// once the socket opens (a run page's subscription).
function openStream({ onMessage, poll, greeting }) {
  const stream = { socket: null, timer: null };
  function unpack(message) {
    if (message.type === "batch") for (const inner of message.messages) unpack(inner);
    else onMessage(message);
  }
  async function pollOnce() {
    try {
      await poll();
      if (!stream.socket || stream.socket.readyState !== WebSocket.OPEN)
        setConnection("polling", "live updates lost: polling every 5 s");
    } catch (error) {
      setConnection("offline", `server unreachable (${error.message}); retrying every 5 s`);
    }
  }
  function startPolling() {
    if (stream.timer) return;
    setConnection("polling", "live updates lost: polling every 5 s");
    pollOnce();
    stream.timer = setInterval(() => { pollOnce(); connect(); }, POLL_MS);
  }
  function connect() {
    if (stream.socket && stream.socket.readyState <= WebSocket.OPEN) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let socket;
    try {
      socket = new WebSocket(`${scheme}://${location.host}/ws`);
    } catch (error) {
      startPolling();
      return;
    }
    stream.socket = socket;
    socket.onopen = () => {
      if (stream.timer) clearInterval(stream.timer);
      stream.timer = null;
      setConnection("live", "live");
      if (greeting) socket.send(JSON.stringify(greeting()));
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (error) { return; }
      unpack(message);
    };
    socket.onclose = () => { stream.socket = null; startPolling(); };
    socket.onerror = () => socket.close();
  }
  connect();
  return stream;
}

async function fetchJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

// -- cancelling (the confirmation dialog of both pages) -------------------------------------------

const cancelling = { id: null, name: "", done: null };

function askCancel(id, name, done) {
  Object.assign(cancelling, { id, name, done });
  document.getElementById("confirm-text").textContent =
    `“${name}” will be asked to stop, then killed if it does not exit in time. This cannot be undone.`;
  document.getElementById("confirm-error").textContent = "";
  document.getElementById("token-row").hidden = Boolean(token());
  document.getElementById("do-cancel").disabled = false;
  document.getElementById("confirm").showModal();
}

async function confirmCancel() {
  const dialog = document.getElementById("confirm");
  const input = document.getElementById("token");
  const error = document.getElementById("confirm-error");
  if (input.value.trim()) sessionStorage.setItem("progresskit-token", input.value.trim());
  if (!token()) {
    document.getElementById("token-row").hidden = false;
    error.textContent = "Enter the cancel token first.";
    return;
  }
  const button = document.getElementById("do-cancel");
  button.disabled = true;
  try {
    const response = await fetch(`/api/runs/${encodeURIComponent(cancelling.id)}/cancel`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token()}` },
    });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem("progresskit-token");
      document.getElementById("token-row").hidden = false;
      error.textContent = body.error || "The token was refused.";
      button.disabled = false;
      return;
    }
    if (!response.ok) {
      error.textContent = body.error || `Cancelling failed (HTTP ${response.status}).`;
      button.disabled = false;
      return;
    }
    input.value = "";
    dialog.close();
    if (cancelling.done) cancelling.done(Date.now() / 1000);
  } catch (err) {
    error.textContent = `Cancelling failed: ${err.message}`;
    button.disabled = false;
  }
}

function setUpCancelDialog() {
  document.getElementById("keep").addEventListener("click", () => document.getElementById("confirm").close());
  document.getElementById("do-cancel").addEventListener("click", confirmCancel);
}

function makeCancelButton(onClick) {
  const cancel = el("button", "cancel");
  cancel.type = "button";
  cancel.appendChild(icon("cancel"));
  cancel.appendChild(document.createTextNode("Cancel"));
  cancel.addEventListener("click", onClick);
  return cancel;
}
