// progresskit dashboard: every run, filtered by status chips and a search, sorted (urgency
// first by default), as cards or a compact list, one page at a time so that 10,000 runs
// cost what one page costs. Live through /ws; polling /api/runs every 5 s while it is down.
// The filter, search, sort, view and page are kept in the address (?status=...&q=...).
"use strict";

const HISTORY_MAX = 100;
// Runs per page: what one screenful or a few show, so a page of 10,000 runs costs a page.
const PAGE_SIZE = { cards: 48, list: 200 };
const PHONE_CARDS = 20;
const phone = window.matchMedia("(max-width: 700px)");

function pageSize() {
  return state.view === "cards" && phone.matches ? PHONE_CARDS : PAGE_SIZE[state.view];
}
const SORTS = {
  urgency: "urgency", name: "name", progress: "progress", eta: "ETA", updated: "last update",
};
const CHART_KEYS_PREFERRED = ["loss", "psnr", "score", "val_loss", "acc", "accuracy"];

const state = {
  runs: new Map(), // id -> {view, history, receivedAt, key}
  shown: new Map(), // id -> the parts of its card or row, for the runs on the page
  root: "",
  filter: new Set(), // statuses shown; empty: all
  query: "",
  sort: "urgency",
  view: "cards",
  page: 0,
  renderQueued: false,
};

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
  if (p.details && p.details.items_unit) return ["Steps", "—"];  // its items have a cell
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

function chartKeys(history) {
  const seen = new Set();
  for (const point of history) for (const key of Object.keys(point.values || {})) seen.add(key);
  const ordered = CHART_KEYS_PREFERRED.filter((k) => seen.has(k));
  for (const key of [...seen].sort()) if (!ordered.includes(key)) ordered.push(key);
  return ordered;
}

// The card's sparkline: the changes seen since the server started (the run page has the
// full curves from disk, with axes).
function renderChart(box, history) {
  box.replaceChildren();
  // One step per recorded change (an epoch, a target): changes come in bursts and lulls,
  // so a time axis would squeeze most of the history into a few pixels.
  const series = chartKeys(history)
    .map((key) => [key, history.map((p, i) => [i, p.values ? p.values[key] : null]).filter((p) => p[1] != null)])
    .filter(([, points]) => points.length >= 2)
    .slice(0, 3);
  if (!series.length) { box.hidden = true; return; }
  box.hidden = false;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 300 60");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const t0 = Math.min(...series.map(([, s]) => s[0][0]));
  const t1 = Math.max(...series.map(([, s]) => s[s.length - 1][0]));
  const legend = el("div", "legend");
  const described = [];
  series.forEach(([key, points], i) => {
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

function runLink(id, cls) {
  const link = el("a", cls);
  link.href = `/runs/${encodeURIComponent(id)}`;
  return link;
}

function makeCard(id) {
  const card = el("article", "card");
  card.dataset.id = id;
  const head = el("div", "card-head");
  const title = el("div", "card-title");
  const name = el("h2", "name");
  const link = runLink(id);
  name.appendChild(link);
  const created = el("div", "created");
  const runner = el("div", "runner");
  title.append(name, created, runner);
  const badge = el("span", "badge");
  head.append(title, badge);
  const row = el("div", "progress-row");
  const { bar, fill, pct } = makeProgress();
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
  const cancel = makeCancelButton(() => cancelRun(id));
  foot.append(reason, cancel);
  card.append(head, row, metrics, stage, chart, foot);
  return { kind: "cards", root: card, link, created, runner, badge, bar, fill, pct, cells, stage, chart, reason, cancel };
}

function updateCard(parts, item) {
  const { view } = item;
  const p = view.run.progress;
  const name = displayName(view);
  parts.root.dataset.status = view.status;
  parts.link.textContent = name;
  parts.link.title = view.run.work_dir;
  parts.created.textContent = `Created ${when(view.created_at)}`;
  parts.runner.textContent = view.runner_type + (p.source_status ? ` · source says “${p.source_status}”` : "");
  setBadge(parts.badge, view.status);
  setProgress(parts.bar, parts.fill, parts.pct, view, `${name} progress`);
  const [stepLabel, stepText] = steps(p);
  parts.cells.steps.dt.textContent = stepLabel;
  parts.cells.steps.dd.textContent = stepText;
  const unit = p.details && p.details.items_unit;
  if (unit) {
    // Items of a named kind (a ComfyUI job's nodes) instead of loss and score, which such
    // runs never have.
    parts.cells.loss.dt.textContent = unit.charAt(0).toUpperCase() + unit.slice(1);
    parts.cells.loss.dd.textContent = `${p.items_completed ?? "?"} / ${p.items_total ?? "?"}`;
    parts.cells.score.dt.textContent = "Current";
    parts.cells.score.dd.textContent = p.current_item || "—";
  } else {
    parts.cells.loss.dt.textContent = "Loss";
    parts.cells.loss.dd.textContent = num(loss(p));
    parts.cells.score.dt.textContent = "Score";
    parts.cells.score.dd.textContent = score(p);
  }
  parts.cells.eta.dd.textContent = eta(view);
  renderStage(parts.stage, p);
  renderChart(parts.chart, item.history);
  parts.reason.classList.toggle("error", Boolean(p.error_message));
  // Offered only where a plugin said it can stop the run (the API's can_cancel).
  parts.cancel.hidden = !view.can_cancel;
  parts.cancel.disabled = Boolean(view.cancel_requested_at);
  parts.cancel.setAttribute("aria-label", `Cancel ${name}`);
  tick(parts, item);
}

function makeRow(id) {
  const row = el("tr", "row");
  row.dataset.id = id;
  const cells = {};
  for (const key of ["name", "status", "progress", "eta", "updated", "reason"]) {
    cells[key] = el(key === "name" ? "th" : "td", `c-${key}`);
    row.appendChild(cells[key]);
  }
  cells.name.setAttribute("scope", "row");
  const link = runLink(id);
  cells.name.appendChild(link);
  const badge = el("span", "badge");
  cells.status.appendChild(badge);
  const { bar, fill, pct } = makeProgress();
  cells.progress.append(bar, pct);
  const reason = el("span", "reason");
  cells.reason.appendChild(reason);
  return { kind: "list", root: row, link, badge, bar, fill, pct, cells, reason };
}

function updateRow(parts, item) {
  const { view } = item;
  const name = displayName(view);
  parts.root.dataset.status = view.status;
  parts.link.textContent = name;
  parts.link.title = view.run.work_dir;
  setBadge(parts.badge, view.status);
  setProgress(parts.bar, parts.fill, parts.pct, view, `${name} progress`);
  parts.cells.eta.textContent = eta(view);
  tick(parts, item);
}

// Ages and silences are recomputed from timestamps every second, never frozen.
function tick(parts, item) {
  const { view } = item;
  const text = reasonText(view);
  parts.reason.textContent = text;
  parts.reason.title = text;  // the list shows one line of it
  const beat = view.run.progress.last_update_time || view.run.last_activity;
  if (parts.kind === "cards") {
    parts.cells.elapsed.dd.textContent = hms(elapsed(item));
    parts.cells.heartbeat.dd.textContent = ago(beat);
  } else {
    parts.cells.updated.textContent = ago(beat);
  }
}

function update(parts, item) {
  if (parts.kind === "cards") updateCard(parts, item);
  else updateRow(parts, item);
}

// -- which runs, in which order --------------------------------------------------------------

function sortKey(view) {
  const p = view.run.progress;
  return {
    rank: URGENCY.indexOf(view.status),
    name: displayName(view).toLowerCase(),
    pct: p.progress_percentage,
    eta: view.active && p.eta_seconds != null ? p.eta_seconds : null,
    updated: view.run.last_activity || p.last_update_time || null,
  };
}

// null last whatever the direction
function nullsLast(a, b, sign) {
  if (a == null || b == null) return a == null ? (b == null ? 0 : 1) : -1;
  return a < b ? -sign : a > b ? sign : 0;
}

const COMPARE = {
  urgency: (a, b) => a.rank - b.rank || nullsLast(a.eta, b.eta, 1),
  name: () => 0,
  progress: (a, b) => nullsLast(a.pct, b.pct, -1),
  eta: (a, b) => nullsLast(a.eta, b.eta, 1),
  updated: (a, b) => nullsLast(a.updated, b.updated, -1),
};

function compare(x, y) {
  const a = x.key, b = y.key;
  return COMPARE[state.sort](a, b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

function matchesQuery(item) {
  return !state.query || item.key.name.includes(state.query);
}

function selected() {
  const searched = [];
  for (const item of state.runs.values()) if (matchesQuery(item)) searched.push(item);
  const counts = {};
  for (const item of searched) counts[item.view.status] = (counts[item.view.status] || 0) + 1;
  const shown = state.filter.size ? searched.filter((item) => state.filter.has(item.view.status)) : searched;
  shown.sort(compare);
  return { shown, counts, searched: searched.length };
}

// -- the page --------------------------------------------------------------------------------

function renderChips(counts, searched) {
  const chips = document.getElementById("chips");
  const all = el("button", "chip", `All ${searched}`);
  all.type = "button";
  all.dataset.status = "all";
  all.setAttribute("aria-pressed", String(state.filter.size === 0));
  all.addEventListener("click", () => { state.filter.clear(); changed(); });
  const buttons = [all];
  for (const status of URGENCY) {
    if (!counts[status] && !state.filter.has(status)) continue;
    const chip = el("button", "chip");
    chip.type = "button";
    chip.dataset.status = status;
    chip.setAttribute("aria-pressed", String(state.filter.has(status)));
    chip.append(icon(status), document.createTextNode(`${LABELS[status]} ${counts[status] || 0}`));
    chip.addEventListener("click", () => {
      if (state.filter.has(status)) state.filter.delete(status); else state.filter.add(status);
      changed();
    });
    buttons.push(chip);
  }
  chips.replaceChildren(...buttons);
}

function render() {
  state.renderQueued = false;
  const { shown, counts, searched } = selected();
  renderChips(counts, searched);
  const size = pageSize();
  const pages = Math.max(1, Math.ceil(shown.length / size));
  state.page = Math.min(state.page, pages - 1);
  const slice = shown.slice(state.page * size, (state.page + 1) * size);
  const cards = state.view === "cards";
  const container = cards ? document.getElementById("jobs") : document.getElementById("rows");
  document.getElementById("jobs").hidden = !cards || !slice.length;
  document.getElementById("list").hidden = cards || !slice.length;
  const wanted = new Set(slice.map((item) => item.view.id));
  for (const [id, parts] of state.shown) {
    if (!wanted.has(id) || parts.kind !== state.view) { parts.root.remove(); state.shown.delete(id); }
  }
  slice.forEach((item, index) => {
    const id = item.view.id;
    let parts = state.shown.get(id);
    if (!parts) {
      parts = cards ? makeCard(id) : makeRow(id);
      state.shown.set(id, parts);
      update(parts, item);
    } else if (parts.item !== item) {
      update(parts, item);
    }
    parts.item = item;
    if (container.children[index] !== parts.root) container.insertBefore(parts.root, container.children[index] || null);
  });
  const first = shown.length ? state.page * size + 1 : 0;
  const of = state.runs.size === searched && !state.filter.size ? "" : ` (${state.runs.size} in all)`;
  document.getElementById("shown").textContent =
    `Showing ${first}–${state.page * size + slice.length} of ${shown.length} runs${of}`;
  document.getElementById("pager").hidden = pages <= 1;
  document.getElementById("page-of").textContent = `Page ${state.page + 1} of ${pages}`;
  document.getElementById("prev").disabled = state.page === 0;
  document.getElementById("next").disabled = state.page >= pages - 1;
  document.getElementById("empty").hidden = state.runs.size > 0;
  document.getElementById("no-match").hidden = state.runs.size === 0 || shown.length > 0;
  document.getElementById("empty-root").textContent = state.root || "the served directory";
  document.getElementById("view-cards").setAttribute("aria-pressed", String(cards));
  document.getElementById("view-list").setAttribute("aria-pressed", String(!cards));
}

function queueRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  requestAnimationFrame(render);
}

// A control changed: back to the first page, into the address, rendered at once.
function changed(keepPage) {
  if (!keepPage) state.page = 0;
  const params = new URLSearchParams();
  if (state.filter.size) params.set("status", [...state.filter].join(","));
  if (state.query) params.set("q", document.getElementById("search").value.trim());
  if (state.sort !== "urgency") params.set("sort", state.sort);
  if (state.view !== "cards") params.set("view", state.view);
  if (state.page) params.set("page", String(state.page + 1));
  const search = params.toString();
  history.replaceState(null, "", location.pathname + (search ? `?${search}` : ""));
  render();
}

function readAddress() {
  const params = new URLSearchParams(location.search);
  for (const word of (params.get("status") || "").split(",")) if (LABELS[word]) state.filter.add(word);
  state.query = (params.get("q") || "").trim().toLowerCase();
  state.sort = SORTS[params.get("sort")] ? params.get("sort") : "urgency";
  state.view = params.get("view") === "list" ? "list" : "cards";
  state.page = Math.max(0, (parseInt(params.get("page"), 10) || 1) - 1);
  document.getElementById("search").value = params.get("q") || "";
  document.getElementById("sort").value = state.sort;
}

// -- data in ---------------------------------------------------------------------------------

function setRun(view, history) {
  state.runs.set(view.id, { view, history: history.slice(-HISTORY_MAX), receivedAt: Date.now(), key: sortKey(view) });
}

// One run changed: its card or row (if on the page) at once, the order and counts at the
// next frame.
function runChanged(id) {
  const parts = state.shown.get(id);
  const item = state.runs.get(id);
  if (parts && item) { update(parts, item); parts.item = item; }
  queueRender();
}

function onMessage(message) {
  if (message.type === "hello") {
    state.root = message.root;
    document.getElementById("root").textContent = message.root;
    state.runs.clear();
    for (const run of message.runs) setRun(run, run.history || []);
    render();
  } else if (message.type === "change") {
    if (message.kind === "removed") {
      state.runs.delete(message.run_id);
    } else {
      const before = state.runs.get(message.run_id);
      const history = before ? before.history : [];
      if (message.point) history.push(message.point);
      setRun(message.run, history);
    }
    runChanged(message.run_id);
  } else if (message.type === "cancel_requested") {
    cancelRequested(message.run_id, message.at);
  }
}

function cancelRequested(id, at) {
  const item = state.runs.get(id);
  if (!item) return;
  item.view = { ...item.view, cancel_requested_at: at };
  runChanged(id);
}

function cancelRun(id) {
  const item = state.runs.get(id);
  if (item) askCancel(id, displayName(item.view), (at) => cancelRequested(id, at));
}

async function poll() {
  const body = await fetchJson("/api/runs");
  const seen = new Set();
  for (const view of body.runs) {
    seen.add(view.id);
    const before = state.runs.get(view.id);
    const history = before ? before.history : [];
    const moved = !before || before.view.run.progress.progress_percentage !== view.run.progress.progress_percentage;
    if (moved) {
      const p = view.run.progress;
      history.push({ t: Date.now() / 1000, status: view.status, pct: p.progress_percentage,
                     values: { ...(p.latest_score || {}), ...(p.metrics || {}) } });
    }
    setRun(view, history);
  }
  for (const id of [...state.runs.keys()]) if (!seen.has(id)) state.runs.delete(id);
  render();
}

// -- unrecognised: run-like directories no tracker claims (nothing vanishes) -----------------

async function refreshUnrecognised() {
  try {
    const body = await fetchJson("/api/unrecognised");
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
    // Unreachable: the connection indicator says so; the section keeps what it last showed.
  }
}

// -- start -------------------------------------------------------------------------------------

function setUpControls() {
  const sort = document.getElementById("sort");
  for (const [value, label] of Object.entries(SORTS)) {
    const option = el("option", null, label);
    option.value = value;
    sort.appendChild(option);
  }
  readAddress();
  sort.addEventListener("change", () => { state.sort = sort.value; changed(); });
  const search = document.getElementById("search");
  search.addEventListener("input", () => { state.query = search.value.trim().toLowerCase(); changed(); });
  document.getElementById("view-cards").addEventListener("click", () => { state.view = "cards"; changed(); });
  document.getElementById("view-list").addEventListener("click", () => { state.view = "list"; changed(); });
  document.getElementById("prev").addEventListener("click", () => { state.page -= 1; changed(true); });
  document.getElementById("next").addEventListener("click", () => { state.page += 1; changed(true); });
}

takeTokenFromUrl();
setUpCancelDialog();
setUpControls();
phone.addEventListener("change", () => render());
setInterval(() => { for (const parts of state.shown.values()) tick(parts, parts.item); }, 1000);
render();
openStream({ onMessage, poll });
refreshUnrecognised();
setInterval(refreshUnrecognised, POLL_MS);
