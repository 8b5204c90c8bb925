// One run's page: its status, every metric's full curve as its tracker reads it from disk
// (so a restarted server shows the whole history), the status changes the server saw, its
// process and lease, its config and the end of its log. Live through /ws (subscribed to
// this run only); the disk-read parts are fetched again at most every few seconds.
"use strict";

const RUN_ID = decodeURIComponent(location.pathname.split("/").pop());
const REFETCH_MS = 3000;
const page = { view: null, progress: null, receivedAt: 0, fetching: null, lastFetch: 0, again: null };

// -- the head ---------------------------------------------------------------------------------

function fact(box, label, value) {
  const row = el("div");
  row.append(el("dt", null, label), el("dd", null, value == null || value === "" ? "—" : String(value)));
  box.appendChild(row);
}

function renderHead(view) {
  page.view = view;
  page.receivedAt = Date.now();
  const p = view.run.progress;
  const name = displayName(view);
  document.title = `${name} · progresskit`;
  document.getElementById("run-name").textContent = name;
  document.getElementById("run-where").textContent = view.run.work_dir;
  setBadge(document.getElementById("run-badge"), view.status);
  if (!page.progress) {
    page.progress = makeProgress();
    document.getElementById("run-progress").append(page.progress.bar, page.progress.pct);
  }
  setProgress(page.progress.bar, page.progress.fill, page.progress.pct, view, `${name} progress`);
  const facts = document.getElementById("run-facts");
  facts.replaceChildren();
  fact(facts, "Runner", view.runner_type + (p.source_status ? ` (source says “${p.source_status}”)` : ""));
  if (p.total_steps != null || p.completed_steps != null) fact(facts, "Steps", `${p.completed_steps ?? "?"} / ${p.total_steps ?? "?"}`);
  if (p.total_epochs != null || p.completed_epochs != null) fact(facts, "Epochs", `${p.completed_epochs ?? "?"} / ${p.total_epochs ?? "?"}`);
  if (p.items_total != null || p.items_completed != null) fact(facts, "Items", `${p.items_completed ?? "?"} / ${p.items_total ?? "?"}`);
  if (p.current_stage != null) fact(facts, "Stage", p.current_stage);
  fact(facts, "ETA", eta(view));
  fact(facts, "Created", when(view.created_at));
  const age = el("div");
  age.append(el("dt", null, "Last update"), el("dd", "m-heartbeat"));
  facts.appendChild(age);
  if (view.run.cause) fact(facts, "Cause", view.run.cause.message || view.run.cause.kind);
  for (const [key, value] of Object.entries(p.metrics || {})) fact(facts, key, num(value));
  for (const [key, value] of Object.entries(p.latest_score || {})) fact(facts, `latest ${key}`, num(value));
  const actions = document.getElementById("run-actions");
  actions.replaceChildren();
  // Offered only where a plugin said it can stop the run (the API's can_cancel).
  if (view.can_cancel) {
    const button = makeCancelButton(() => askCancel(view.id, name, (at) => renderHead({ ...page.view, cancel_requested_at: at })));
    button.disabled = Boolean(view.cancel_requested_at);
    actions.appendChild(button);
  }
  tickHead();
}

function tickHead() {
  const view = page.view;
  if (!view) return;
  const reason = document.getElementById("run-reason");
  reason.textContent = reasonText(view);
  reason.classList.toggle("error", Boolean(view.run.progress.error_message));
  const beat = view.run.progress.last_update_time || view.run.last_activity;
  const cell = document.querySelector("#run-facts .m-heartbeat");
  if (cell) cell.textContent = ago(beat);
}

// -- curves, with axes ---------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 220, LEFT = 64, RIGHT = 12, TOP = 10, BOTTOM = 40;

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text != null) node.textContent = text;
  return node;
}

// About `count` round tick values covering [lo, hi]; whole numbers only for a count (an
// epoch, a step).
function ticks(lo, hi, count, whole) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  if (whole) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function timeLabel(unix, span) {
  const d = new Date(unix * 1000);
  if (span > 2 * 86400) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function renderCurve(name, series, axis) {
  const points = series.points;
  const figure = el("figure", "curve");
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const pad = Math.abs(y0) * 0.1 || 1; y0 -= pad; y1 += pad; }
  const sx = (x) => LEFT + ((x - x0) / (x1 - x0)) * (W - LEFT - RIGHT);
  const sy = (y) => H - BOTTOM - ((y - y0) / (y1 - y0)) * (H - TOP - BOTTOM);
  const timed = axis === "time";
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "curve-svg" });
  const grid = svgEl("g", { class: "axis" });
  for (const v of ticks(y0, y1, 4)) {
    grid.appendChild(svgEl("line", { x1: LEFT, x2: W - RIGHT, y1: sy(v), y2: sy(v), class: "grid" }));
    grid.appendChild(svgEl("text", { x: LEFT - 6, y: sy(v) + 4, "text-anchor": "end" }, num(v)));
  }
  const xTicks = timed ? [x0, (x0 + x1) / 2, x1] : ticks(x0, x1, 5, xs.every(Number.isInteger));
  for (const v of xTicks) {
    grid.appendChild(svgEl("line", { x1: sx(v), x2: sx(v), y1: H - BOTTOM, y2: H - BOTTOM + 5 }));
    const label = timed ? timeLabel(v, x1 - x0) : num(v);
    grid.appendChild(svgEl("text", { x: sx(v), y: H - BOTTOM + 18, "text-anchor": "middle" }, label));
  }
  grid.appendChild(svgEl("line", { x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM }));
  grid.appendChild(svgEl("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM }));
  grid.appendChild(svgEl("text", { x: (LEFT + W - RIGHT) / 2, y: H - 4, "text-anchor": "middle", class: "axis-name" }, timed ? "time" : axis));
  svg.appendChild(grid);
  svg.appendChild(svgEl("polyline", {
    class: "line", points: points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "),
  }));
  if (points.length <= 60) for (const p of points) svg.appendChild(svgEl("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, class: "dot" }));
  const last = points[points.length - 1];
  const times = points.map((p) => p[2]).filter((t) => t != null);
  let span = "";
  if (times.length) span = `, recorded ${when(Math.min(...times))} to ${when(Math.max(...times))}`;
  const axisText = timed ? "over time" : `by ${axis}`;
  svg.setAttribute("aria-label", `${name} ${axisText}: ${points.length} points from ${num(ys[0])} to ${num(last[1])}, lowest ${num(Math.min(...ys))}, highest ${num(Math.max(...ys))}${span}`);
  const caption = el("figcaption");
  caption.append(el("strong", null, name), document.createTextNode(` ${axisText} · latest ${num(last[1])}`));
  if (series.total > points.length) caption.append(document.createTextNode(` · ${points.length} of ${series.total} points shown`));
  if (times.length) caption.append(el("span", "when", ` · ${when(Math.min(...times))} → ${when(Math.max(...times))}`));
  figure.append(caption, svg);
  return figure;
}

function renderCurves(curves) {
  const box = document.getElementById("curves");
  const names = Object.keys(curves.series);
  box.replaceChildren(...names.map((name) => renderCurve(name, curves.series[name], curves.axis)));
  const note = document.getElementById("curves-note");
  if (curves.error) note.textContent = `The curves could not be read: ${curves.error}`;
  else if (!names.length) note.textContent = "This run's files hold no metric history.";
  else note.textContent = "Read from the run's files: the whole history, whenever the server started.";
}

// -- the rest ----------------------------------------------------------------------------------

function renderStatuses(statuses) {
  const body = document.getElementById("statuses");
  body.replaceChildren();
  for (const entry of [...statuses].reverse()) {
    const row = el("tr");
    const badge = el("span", "badge");
    setBadge(badge, entry.status);
    const status = el("td");
    status.appendChild(badge);
    row.append(el("td", null, when(entry.t)), status, el("td", null, entry.previous ? LABELS[entry.previous] || entry.previous : "—"),
               el("td", "reason", entry.reason || ""));
    body.appendChild(row);
  }
}

function renderProcess(view, lease) {
  const box = document.getElementById("process");
  box.replaceChildren();
  const info = view.run.process_info;
  if (info) {
    fact(box, "Process", info.pid);
    fact(box, "Host", info.host);
    fact(box, "User", info.user);
    fact(box, "Command", info.cmd);
  } else {
    fact(box, "Process", "none known");
  }
  if (!lease) { fact(box, "Lease", "none"); return; }
  if (lease.error) { fact(box, "Lease", lease.error); return; }
  fact(box, "Lease", `${lease.state}, pid ${lease.pid} on ${lease.host}`);
  fact(box, "Lease renewed", `${when(lease.renewed_at)} (${ago(lease.renewed_at)})`);
  if (lease.interval != null) fact(box, "Renewal promised every", duration(lease.interval));
  fact(box, "Lease started", when(lease.started_at));
  if (lease.ended_at != null) fact(box, "Lease ended", when(lease.ended_at));
  if (lease.cause) fact(box, "Lease's cause", lease.cause.message || lease.cause.kind);
  if (lease.producers && lease.producers.length) fact(box, "Producers", lease.producers.join(", "));
  if (lease.slurm) fact(box, "Slurm job", lease.slurm.job_id);
}

function renderDetail(detail) {
  renderHead(detail.run);
  renderCurves(detail.curves);
  renderStatuses(detail.run.statuses || []);
  renderProcess(detail.run, detail.lease);
  const config = document.getElementById("config");
  config.textContent = detail.config.error
    ? `The config could not be read: ${detail.config.error}`
    : JSON.stringify(detail.config.values, null, 2);
  const log = document.getElementById("log");
  const note = document.getElementById("log-note");
  if (!detail.log || !detail.log.file) {
    note.textContent = "No log file found for this run.";
    log.textContent = "";
  } else {
    note.textContent = detail.log.error
      ? `${detail.log.file}: ${detail.log.error}`
      : `${detail.log.lines.length === 1 ? "The last line" : `The last ${detail.log.lines.length} lines`} of ${detail.log.file}${detail.log.truncated ? " (earlier lines not shown)" : ""}.`;
    log.textContent = detail.log.lines.join("\n");
  }
}

async function load() {
  page.lastFetch = Date.now();
  const response = await fetch(`/api/runs/${encodeURIComponent(RUN_ID)}/detail`, { cache: "no-store" });
  if (response.status === 404) {
    document.getElementById("run-name").textContent = "No such run";
    document.getElementById("run-reason").textContent = "The server no longer knows this run (its directory was removed?).";
    return;
  }
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  renderDetail(await response.json());
}

// A change: the head at once, the disk-read parts again at most every REFETCH_MS.
function refetchSoon() {
  if (page.again) return;
  const wait = Math.max(0, page.lastFetch + REFETCH_MS - Date.now());
  page.again = setTimeout(() => { page.again = null; load().catch(() => {}); }, wait);
}

function onMessage(message) {
  if (message.type === "change" && message.run_id === RUN_ID) {
    if (message.kind !== "removed") renderHead(message.run);
    refetchSoon();
  } else if (message.type === "cancel_requested" && message.run_id === RUN_ID && page.view) {
    renderHead({ ...page.view, cancel_requested_at: message.at });
  }
}

takeTokenFromUrl();
setUpCancelDialog();
setInterval(tickHead, 1000);
load().catch((error) => setConnection("offline", `server unreachable (${error.message}); retrying every 5 s`));
openStream({ onMessage, poll: load, greeting: () => ({ type: "subscribe", run_ids: [RUN_ID] }) });
