// progresskit dashboard: one card per run, live through /ws, polling /api/runs every 5 s
// while the socket is down. Every value from the server goes into the page as text, never
// as markup.
"use strict";

const POLL_MS = 5000;
const HISTORY_MAX = 100;
const CHART_KEYS_PREFERRED = ["loss", "psnr", "score", "val_loss", "acc", "accuracy"];

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
  pending: "Pending", running: "Running", stuck: "Stuck", crashed: "Crashed", failed: "Failed",
  cancelled: "Cancelled", finished: "Finished", outdated: "Outdated", unknown: "Unknown",
};

const state = {
  runs: new Map(), // id -> {view, history, receivedAt}
  cards: new Map(), // id -> card elements
  socket: null,
  pollTimer: null,
  live: false,
  root: "",
  pendingCancel: null,
};

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

// -- what a card shows ---------------------------------------------------------------------

function elapsed(item) {
  const { view, receivedAt } = item;
  const p = view.run.progress;
  const ticking = view.active ? (Date.now() - receivedAt) / 1000 : 0;
  if (p.elapsed_seconds != null) return p.elapsed_seconds + ticking;
  if (view.created_at != null) {
    const end = view.active ? Date.now() / 1000 : (view.run.last_activity || p.last_update_time);
    return end != null ? end - view.created_at : null;
  }
  return null;
}

function steps(p) {
  if (p.total_steps != null || p.completed_steps != null)
    return ["Steps", `${p.completed_steps ?? "?"} / ${p.total_steps ?? "?"}`];
  if (p.items_total != null || p.items_completed != null)
    return ["Items", `${p.items_completed ?? "?"} / ${p.items_total ?? "?"}`];
  if (p.completed_epochs == null && p.total_epochs == null) return ["Epochs", "—"];
  return ["Epochs", `${p.completed_epochs ?? "?"} / ${p.total_epochs ?? "?"}`];
}

function loss(p) {
  if (p.metrics && p.metrics.loss != null) return p.metrics.loss;
  if (p.latest_score && p.latest_score.loss != null) return p.latest_score.loss;
  return null;
}

function score(p) {
  const scores = Object.entries(p.latest_score || {}).filter(([k]) => k !== "loss");
  if (!scores.length) return "—";
  return scores.slice(0, 2).map(([k, v]) => `${k} ${num(v)}`).join(", ");
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

function chartKeys(history) {
  const seen = new Set();
  for (const point of history) for (const key of Object.keys(point.values || {})) seen.add(key);
  const ordered = CHART_KEYS_PREFERRED.filter((k) => seen.has(k));
  for (const key of [...seen].sort()) if (!ordered.includes(key)) ordered.push(key);
  return ordered.slice(0, 3);
}

function renderChart(box, history) {
  const keys = chartKeys(history);
  box.replaceChildren();
  // One step per recorded change (an epoch, a target): changes come in bursts and lulls,
  // so a time axis would squeeze most of the history into a few pixels.
  const series = keys
    .map((key) => history.map((p, i) => [i, p.values ? p.values[key] : null]).filter((p) => p[1] != null))
    .filter((points) => points.length >= 2);
  if (!series.length) { box.hidden = true; return; }
  box.hidden = false;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 300 60");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const t0 = Math.min(...series.map((s) => s[0][0]));
  const t1 = Math.max(...series.map((s) => s[s.length - 1][0]));
  const legend = el("div", "legend");
  const described = [];
  series.forEach((points, i) => {
    const ys = points.map((p) => p[1]);
    const lo = Math.min(...ys), hi = Math.max(...ys);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", `s${i}`);
    line.setAttribute("points", points.map(([t, v]) => {
      const x = t1 > t0 ? ((t - t0) / (t1 - t0)) * 296 + 2 : 150;
      const y = hi > lo ? 56 - ((v - lo) / (hi - lo)) * 52 : 30;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" "));
    svg.appendChild(line);
    const key = keys[i];
    const last = ys[ys.length - 1];
    const entry = el("span", `s${i}`);
    entry.appendChild(el("i"));
    entry.appendChild(document.createTextNode(`${key} ${num(last)} (${num(lo)}–${num(hi)})`));
    legend.appendChild(entry);
    described.push(`${key} from ${num(ys[0])} to ${num(last)}`);
  });
  svg.setAttribute("aria-label", `History: ${described.join("; ")}`);
  box.appendChild(svg);
  box.appendChild(legend);
}

function renderStage(box, p) {
  const completed = p.completed_items || [];
  if (p.current_stage == null && p.current_item == null && !completed.length) { box.hidden = true; return; }
  box.hidden = false;
  box.replaceChildren();
  if (p.current_stage != null) {
    const pct = p.stage_progress_percentage != null ? ` (${p.stage_progress_percentage.toFixed(0)}%)` : "";
    box.appendChild(el("p", "stage-name", `Stage: ${p.current_stage}${pct}`));
  }
  if (p.current_item != null) {
    const of = p.items_total != null ? ` — ${p.items_completed ?? 0} of ${p.items_total} done` : "";
    box.appendChild(el("p", "current-target", `Current target: ${p.current_item}${of}`));
  }
  if (completed.length) {
    const list = el("ul", "targets");
    list.setAttribute("aria-label", "Completed targets");
    for (const item of completed.slice(-8)) {
      const li = el("li");
      li.appendChild(el("span", "tname", item.name));
      li.appendChild(el("span", "tstatus", item.status));
      const metrics = Object.entries(item.metrics || {}).map(([k, v]) => `${k} ${num(v)}`).join(", ");
      if (metrics) li.appendChild(el("span", "tmetrics", metrics));
      list.appendChild(li);
    }
    if (completed.length > 8) list.appendChild(el("li", "tmetrics", `…and ${completed.length - 8} more`));
    box.appendChild(list);
  }
}

function makeCard(id) {
  const card = el("article", "card");
  card.dataset.id = id;
  const head = el("div", "card-head");
  const title = el("div", "card-title");
  const name = el("h2", "name");
  const created = el("div", "created");
  const runner = el("div", "runner");
  title.append(name, created, runner);
  const badge = el("span", "badge");
  head.append(title, badge);
  const row = el("div", "progress-row");
  const bar = el("div", "progress");
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  const fill = el("div", "bar");
  bar.appendChild(fill);
  const pct = el("span", "pct");
  row.append(bar, pct);
  const metrics = el("dl", "metrics");
  const cells = {};
  for (const [key, label] of [["elapsed", "Elapsed"], ["steps", "Steps"], ["loss", "Loss"],
                              ["score", "Score"], ["eta", "ETA"], ["heartbeat", "Last update"]]) {
    const box = el("div");
    const dt = el("dt", null, label);
    const dd = el("dd", `m-${key}`);
    box.append(dt, dd);
    metrics.appendChild(box);
    cells[key] = { dt, dd };
  }
  const stage = el("div", "stage");
  const chart = el("div", "chart");
  const reason = el("p", "reason");
  const foot = el("div", "card-foot");
  const cancel = el("button", "cancel");
  cancel.type = "button";
  cancel.appendChild(icon("cancel"));
  cancel.appendChild(document.createTextNode("Cancel"));
  cancel.addEventListener("click", () => askCancel(id));
  foot.append(reason, cancel);
  card.append(head, row, metrics, stage, chart, foot);
  return { card, name, created, runner, badge, bar, fill, pct, cells, stage, chart, reason, cancel };
}

function updateCard(id) {
  const item = state.runs.get(id);
  let parts = state.cards.get(id);
  if (!parts) {
    parts = makeCard(id);
    state.cards.set(id, parts);
  }
  const { view } = item;
  const p = view.run.progress;
  parts.card.dataset.status = view.status;
  parts.name.textContent = view.name;
  parts.name.title = view.run.work_dir;
  parts.created.textContent = `Created ${when(view.created_at)}`;
  parts.runner.textContent = view.runner_type + (p.source_status ? ` · source says “${p.source_status}”` : "");
  parts.badge.dataset.status = view.status;
  parts.badge.replaceChildren(icon(view.status), document.createTextNode(LABELS[view.status] || view.status));
  // Unknown progress (null) is "—" and an indeterminate bar, never 0%.
  const known = p.progress_percentage != null;
  const percent = known ? Math.max(0, Math.min(100, p.progress_percentage)) : 0;
  parts.fill.style.width = `${percent}%`;
  if (known) parts.bar.setAttribute("aria-valuenow", percent.toFixed(1));
  else parts.bar.removeAttribute("aria-valuenow");
  parts.bar.setAttribute("aria-label", `${view.name} progress`);
  parts.pct.textContent = known ? `${percent.toFixed(1)}%` : "—";
  const [stepLabel, stepText] = steps(p);
  parts.cells.steps.dt.textContent = stepLabel;
  parts.cells.steps.dd.textContent = stepText;
  parts.cells.loss.dd.textContent = num(loss(p));
  parts.cells.score.dd.textContent = score(p);
  parts.cells.eta.dd.textContent = eta(view);
  renderStage(parts.stage, p);
  renderChart(parts.chart, item.history);
  parts.reason.classList.toggle("error", Boolean(p.error_message));
  parts.cancel.hidden = !view.active;
  parts.cancel.disabled = Boolean(view.cancel_requested_at);
  parts.cancel.title = `Cancel ${view.name}`;
  tickCard(id);
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

function tickCard(id) {
  const item = state.runs.get(id);
  const parts = state.cards.get(id);
  if (!item || !parts) return;
  parts.reason.textContent = reasonText(item.view);
  parts.cells.elapsed.dd.textContent = hms(elapsed(item));
  const beat = item.view.run.progress.last_update_time || item.view.run.last_activity;
  parts.cells.heartbeat.dd.textContent = beat ? `${duration(Math.max(0, Date.now() / 1000 - beat))} ago` : "—";
}

function order(a, b) {
  if (a.view.active !== b.view.active) return a.view.active ? -1 : 1;
  return a.view.name.localeCompare(b.view.name);
}

function renderAll() {
  const jobs = document.getElementById("jobs");
  const items = [...state.runs.entries()].sort((x, y) => order(x[1], y[1]));
  for (const [id] of items) updateCard(id);
  for (const [id, parts] of state.cards) {
    if (!state.runs.has(id)) { parts.card.remove(); state.cards.delete(id); }
  }
  items.forEach(([id], index) => {
    const card = state.cards.get(id).card;
    if (jobs.children[index] !== card) jobs.insertBefore(card, jobs.children[index] || null);
  });
  renderSummary();
}

function renderSummary() {
  const counts = {};
  for (const { view } of state.runs.values()) counts[view.status] = (counts[view.status] || 0) + 1;
  const summary = document.getElementById("summary");
  summary.replaceChildren(el("span", null, `${state.runs.size} runs`));
  for (const status of Object.keys(LABELS)) {
    if (counts[status]) summary.appendChild(el("span", null, `${LABELS[status]}: ${counts[status]}`));
  }
  document.getElementById("empty").hidden = state.runs.size > 0;
  document.getElementById("empty-root").textContent = state.root || "the served directory";
}

// -- data in ---------------------------------------------------------------------------------

function point(view, t) {
  const p = view.run.progress;
  const values = { ...(p.latest_score || {}), ...(p.metrics || {}) };
  return { t, status: view.status, pct: p.progress_percentage, values };
}

function setRun(view, history) {
  state.runs.set(view.id, { view, history: history.slice(-HISTORY_MAX), receivedAt: Date.now() });
}

function onMessage(message) {
  if (message.type === "batch") {
    for (const inner of message.messages) onMessage(inner);
  } else if (message.type === "hello") {
    state.root = message.root;
    document.getElementById("root").textContent = message.root;
    state.runs.clear();
    for (const run of message.runs) setRun(run, run.history || []);
    renderAll();
  } else if (message.type === "change") {
    if (message.kind === "removed") {
      state.runs.delete(message.run_id);
    } else {
      const before = state.runs.get(message.run_id);
      const history = before ? before.history : [];
      if (message.point) history.push(message.point);
      setRun(message.run, history);
      if (before && before.view.active === message.run.active) {
        // Same place in the order: only this card changes.
        updateCard(message.run_id);
        renderSummary();
        return;
      }
    }
    renderAll();
  } else if (message.type === "cancel_requested") {
    const item = state.runs.get(message.run_id);
    if (item) { item.view = { ...item.view, cancel_requested_at: message.at }; updateCard(message.run_id); }
  }
}

async function poll() {
  try {
    const response = await fetch("/api/runs", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    const seen = new Set();
    for (const view of body.runs) {
      seen.add(view.id);
      const before = state.runs.get(view.id);
      const history = before ? before.history : [];
      const changed = !before || before.view.run.progress.progress_percentage !== view.run.progress.progress_percentage;
      if (changed) history.push(point(view, Date.now() / 1000));
      setRun(view, history);
    }
    for (const id of [...state.runs.keys()]) if (!seen.has(id)) state.runs.delete(id);
    renderAll();
  } catch (error) {
    setConnection("polling", `server unreachable (${error.message}); retrying every 5 s`);
  }
}

function setConnection(mode, text) {
  const conn = document.getElementById("conn");
  conn.dataset.state = mode;
  conn.querySelector(".conn-text").textContent = text;
}

function startPolling() {
  if (state.pollTimer) return;
  setConnection("polling", "live updates lost: polling every 5 s");
  poll();
  state.pollTimer = setInterval(() => { poll(); connect(); }, POLL_MS);
}

function stopPolling() {
  if (state.pollTimer) clearInterval(state.pollTimer);
  state.pollTimer = null;
}

function connect() {
  if (state.socket && state.socket.readyState <= WebSocket.OPEN) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let socket;
  try {
    socket = new WebSocket(`${scheme}://${location.host}/ws`);
  } catch (error) {
    startPolling();
    return;
  }
  state.socket = socket;
  socket.onopen = () => { state.live = true; stopPolling(); setConnection("live", "live"); };
  socket.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch (error) { return; }
    onMessage(message);
  };
  socket.onclose = () => { state.live = false; state.socket = null; startPolling(); };
  socket.onerror = () => socket.close();
}

// -- cancelling ------------------------------------------------------------------------------

function askCancel(id) {
  const item = state.runs.get(id);
  if (!item) return;
  state.pendingCancel = id;
  document.getElementById("confirm-text").textContent =
    `“${item.view.name}” will be asked to stop, then killed if it does not exit in time. This cannot be undone.`;
  document.getElementById("confirm-error").textContent = "";
  document.getElementById("token-row").hidden = Boolean(token());
  document.getElementById("do-cancel").disabled = false;
  document.getElementById("confirm").showModal();
}

async function confirmCancel() {
  const id = state.pendingCancel;
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
    const response = await fetch(`/api/runs/${encodeURIComponent(id)}/cancel`, {
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
    const item = state.runs.get(id);
    if (item) { item.view = { ...item.view, cancel_requested_at: Date.now() / 1000 }; updateCard(id); }
  } catch (err) {
    error.textContent = `Cancelling failed: ${err.message}`;
    button.disabled = false;
  }
}

// -- unrecognised: run-like directories no tracker claims (nothing vanishes) -----------------

async function refreshUnrecognised() {
  try {
    const response = await fetch("/api/unrecognised", { cache: "no-store" });
    if (!response.ok) return;  // the connection indicator already says what is wrong
    const body = await response.json();
    const section = document.getElementById("unrecognised");
    const list = el("ul");
    for (const entry of body.unrecognised) {
      const item = el("li");
      item.append(el("code", null, entry.path), el("span", null, ` ${entry.reason}`));
      item.title = `the loaded trackers expect:\n${entry.expects.join("\n")}`;
      list.appendChild(item);
    }
    section.replaceChildren(el("h2", null, `${body.count} unrecognised (claimed by no tracker)`), list);
    section.hidden = body.count === 0;
  } catch (error) {
    // Unreachable: poll() reports it; the section keeps what it last showed.
  }
}

// -- start -------------------------------------------------------------------------------------

takeTokenFromUrl();
document.getElementById("keep").addEventListener("click", () => document.getElementById("confirm").close());
document.getElementById("do-cancel").addEventListener("click", confirmCancel);
setInterval(() => { for (const id of state.runs.keys()) tickCard(id); }, 1000);
renderSummary();
connect();
refreshUnrecognised();
setInterval(refreshUnrecognised, POLL_MS);
