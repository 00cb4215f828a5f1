// s3pod's dashboard: polls /dashboard/state and /dashboard/dead every two seconds while
// the page is visible and draws them. Text from the queue goes in with textContent only.
"use strict";

const POLL_MS = 2000;
const PAGE = 20;
let csrf = null;
let canAct = false;
let deadOffset = 0;
let failuresOffset = 0;
let lastHeard = 0;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

function ago(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${(seconds / 86400).toFixed(1)} d ago`;
}

const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");
const dest = (bucket, key) => (bucket ? `s3://${bucket}/${key ?? ""}` : "–");

// A table is redrawn only when what it shows changed, so a button is not replaced under a click.
function fill(table, data, row) {
  const body = $(table).querySelector("tbody");
  const drawn = JSON.stringify(data);
  if (body.dataset.drawn === drawn) return;
  body.dataset.drawn = drawn;
  body.replaceChildren(...data.map(row));
}

function notice(text, error = false) {
  const box = $("notice");
  box.textContent = text;
  box.className = error ? "error" : "";
  box.hidden = !text;
}

function drawCounts(counts) {
  for (const [name, value] of Object.entries(counts)) {
    const cell = $(`count-${name}`);
    if (!cell) continue;
    cell.textContent = value.toLocaleString();
    cell.dataset.value = value;
    cell.classList.toggle("some", value > 0);
  }
}

function drawChart(history) {
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  const width = 600, height = 140, slot = width / history.length;
  const maxJobs = Math.max(1, ...history.map((m) => m.uploaded + m.failed));
  const maxBytes = Math.max(1, ...history.map((m) => m.bytes));
  const shapes = [];
  const rect = (x, y, h, cls) => {
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", x + 1); r.setAttribute("y", y);
    r.setAttribute("width", Math.max(1, slot - 2)); r.setAttribute("height", h);
    r.setAttribute("class", cls);
    return r;
  };
  const points = [];
  history.forEach((m, i) => {
    const up = (m.uploaded / maxJobs) * (height - 10), bad = (m.failed / maxJobs) * (height - 10);
    if (m.uploaded) shapes.push(rect(i * slot, height - up, up, "uploaded"));
    if (m.failed) shapes.push(rect(i * slot, height - up - bad, bad, "failed"));
    points.push(`${(i + 0.5) * slot},${height - 4 - (m.bytes / maxBytes) * (height - 14)}`);
  });
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("class", "bytes");
  shapes.push(line);
  svg.replaceChildren(...shapes);
}

function drawRates(rates) {
  $("rate-jobs").textContent = rates.jobs_per_s.toFixed(2);
  $("rate-bytes").textContent = `${bytes(rates.bytes_per_s)}/s`;
  $("rate-failed").textContent = rates.failures;
}

function drawBandwidth(bandwidth) {
  // The rate in force now; a timetable and the destinations' own limits go in the tooltip.
  if (!bandwidth) return;
  const own = Object.entries(bandwidth.destinations ?? {}).map(([name, b]) => `${name} ${b.rate}`);
  $("bwlimit").textContent = bandwidth.rate + (own.length ? ` · ${own.join(" · ")}` : "");
  $("bwlimit").parentElement.title = `--bwlimit ${bandwidth.bwlimit}` + (own.length ? `; destinations: ${own.join(", ")}` : "");
}

function drawUploads(uploads) {
  $("uploads-count").textContent = uploads.length ? `(${uploads.length})` : "";
  fill("uploads", uploads, (u) => {
    const percent = u.total_bytes ? Math.min(100, (100 * u.done_bytes) / u.total_bytes) : 0;
    const bar = el("div", { class: "bar", "data-done": u.done_bytes, "data-total": u.total_bytes },
      el("span"), el("em", {}, `${bytes(u.done_bytes)} of ${bytes(u.total_bytes)} · ${percent.toFixed(0)} %`));
    bar.firstChild.style.width = `${percent}%`;
    return el("tr", { "data-job": u.job_id }, el("td", { class: "path" }, u.path),
      el("td", { class: "dest" }, dest(u.bucket, u.key)), el("td", {}, bar),
      el("td", {}, `${bytes(u.rate_bps)}/s`), el("td", {}, u.worker));
  });
}

function drawWorkers(workers, now) {
  const since = workers.map((w) => ({ ...w, now: Math.round(now) }));
  fill("workers", since, (w) => el("tr", { "data-worker": w.id, class: w.alive ? "" : "gone" },
    el("td", {}, w.id), el("td", {}, w.host ?? "–"), el("td", {}, w.pid ?? "–"), el("td", {}, w.version ?? "–"),
    el("td", {}, w.started_at ? ago(w.now - w.started_at) : "–"),
    el("td", {}, `${w.heartbeat_age_s.toFixed(1)} s ago${w.alive ? "" : " (gone)"}`), el("td", {}, w.holding)));
}

// Which part of a paged list is shown, and whether there is more either way.
function drawRange(name, page) {
  const end = page.offset + page.entries.length;
  $(`${name}-range`).textContent = page.total ? `(${page.offset + 1}–${end} of ${page.total})` : "";
  $(`${name}-prev`).disabled = page.offset === 0;
  $(`${name}-next`).disabled = end >= page.total;
}

function drawFailures(page) {
  drawRange("failures", page);
  fill("failures", page.entries, (f) => el("tr", {},
    el("td", {}, when(f.at)), el("td", { class: f.kind === "retry" ? "" : "dead-kind" }, f.kind),
    el("td", {}, f.job_id ?? "–"), el("td", { class: "dest" }, dest(f.bucket, f.key)), el("td", {}, f.attempt),
    el("td", { class: "reason" }, f.error)));
}

function drawAccess(access) {
  canAct = access.can_act;
  csrf = access.csrf;
  $("login").hidden = !access.login || canAct;
  $("logout").hidden = !canAct || !csrf;
  $("readonly").hidden = access.login;
  for (const button of document.querySelectorAll("button.act")) button.disabled = !canAct;
}

function drawDead(page) {
  drawRange("dead", page);
  fill("dead", page.entries.map((d) => ({ ...d, canAct })), (d) => {
    const retry = el("button", { type: "button", class: "act retry", disabled: !canAct || !d.retryable }, "Retry");
    const drop = el("button", { type: "button", class: "act danger delete", disabled: !canAct }, "Delete");
    retry.addEventListener("click", () => act("retry", { ref: d.ref }));
    drop.addEventListener("click", () => act("delete", { ref: d.ref }));
    return el("tr", { "data-ref": d.ref, "data-job": d.id ?? "" }, el("td", {}, when(d.failed_at)),
      el("td", {}, d.id ?? "(invalid)"), el("td", { class: "dest" }, dest(d.bucket, d.key)),
      el("td", { class: "path" }, d.path ?? "–"), el("td", {}, d.attempts), el("td", { class: "reason" }, d.error),
      el("td", { class: "actions" }, retry, drop));
  });
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function refresh() {
  try {
    // The newest failures come with the state; older pages cost a request of their own.
    const [state, dead, failures] = await Promise.all([
      getJson("/dashboard/state"), getJson(`/dashboard/dead?offset=${deadOffset}&limit=${PAGE}`),
      failuresOffset ? getJson(`/dashboard/failures?offset=${failuresOffset}&limit=${PAGE}`) : null]);
    drawAccess(state.access);
    drawCounts(state.counts);
    drawChart(state.history);
    drawRates(state.rates);
    drawBandwidth(state.bandwidth);
    drawUploads(state.uploads);
    drawWorkers(state.workers, state.read_at);
    drawFailures(failures ?? { total: state.failures_total, offset: 0, entries: state.failures });
    drawDead(dead);
    lastHeard = Date.now();
    $("live").textContent = `live · ${new Date().toLocaleTimeString()}`;
    $("live").className = "live ok";
  } catch (error) {
    $("live").textContent = lastHeard ? `no answer since ${new Date(lastHeard).toLocaleTimeString()}` : "no answer";
    $("live").className = "live stale";
  }
}

async function act(action, target) {
  if (target.all && !window.confirm(`${action === "retry" ? "Retry" : "Delete"} every dead letter?`)) return;
  try {
    const response = await fetch(`/dashboard/dead/${action}`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf ?? "" },
      body: JSON.stringify(target),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    notice(action === "retry" ? `queued again: ${body.queued.length}` : `deleted: ${body.deleted}`);
  } catch (error) {
    notice(`${action} refused: ${error.message}`, true);
  }
  refresh();
}

function start() {
  if (new URLSearchParams(location.search).get("login") === "failed") notice("wrong token", true);
  $("dead-prev").addEventListener("click", () => { deadOffset = Math.max(0, deadOffset - PAGE); refresh(); });
  $("dead-next").addEventListener("click", () => { deadOffset += PAGE; refresh(); });
  $("failures-prev").addEventListener("click", () => { failuresOffset = Math.max(0, failuresOffset - PAGE); refresh(); });
  $("failures-next").addEventListener("click", () => { failuresOffset += PAGE; refresh(); });
  $("retry-all").addEventListener("click", () => act("retry", { all: true }));
  $("delete-all").addEventListener("click", () => act("delete", { all: true }));
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
}

start();
