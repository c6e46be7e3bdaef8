// herojobs dashboard: renders the fleet, queue and job pages from /api JSON and polls it
// every 1.5 s. Hand-written, no framework; every value goes in through textContent (never
// innerHTML), so job params and results cannot inject markup.
"use strict";

const POLL_MS = 1500;
const TOKEN_KEY = "herojobs-token";
let timer = null;
let readOnly = true;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

// Replaces a node's children, skipping null/undefined and flattening nested arrays.
function put(node, ...kids) {
  node.replaceChildren(...kids.flat(Infinity).filter(k => k !== null && k !== undefined && k !== false));
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  return e;
}

// Human durations and times (the JSON keeps raw unix seconds).
function dur(s) {
  if (s === null || s === undefined) return "—";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}
function ago(unix) {
  if (!unix) return "—";
  return dur(Date.now() / 1000 - unix) + " ago";
}
function when(unix) {
  if (!unix) return "—";
  return new Date(unix * 1000).toLocaleString() + " (" + ago(unix) + ")";
}
function rate(x) { return (x || 0).toFixed(x >= 100 ? 0 : 1) + "/s"; }
function statusBadge(s) { return el("span", { class: "status " + s, text: s }); }
const enc = encodeURIComponent;
function queueHref(c, t, q) { return "/queue/" + enc(c) + "/" + enc(t) + (q ? "?" + q : ""); }
function jobHref(c, t, id) { return "/job/" + enc(c) + "/" + enc(t) + "/" + id; }

function flash(msg, ok) {
  const f = document.getElementById("flash");
  f.textContent = msg;
  f.className = ok ? "ok" : "bad";
}

function setMode(ro) {
  readOnly = ro;
  document.getElementById("mode").textContent = ro ? "read-only" : "actions need the token";
  document.getElementById("token-box").hidden = ro;
  document.querySelectorAll("button[data-action]").forEach(b => { b.disabled = ro; });
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { "Accept": "application/json" } });
  const body = await r.json().catch(() => ({ error: "bad JSON from " + url }));
  if (!r.ok && !body.summary && !body.job) throw new Error(body.error || r.status + " " + r.statusText);
  return body;
}

// Every action goes through here: POST /api/action with the token in a header (a
// cross-site page cannot send it). New actions (retry, cancel, pause) need only a button.
async function act(action, params, then) {
  const token = document.getElementById("token").value || sessionStorage.getItem(TOKEN_KEY) || "";
  const r = await fetch("/api/action", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Herojobs-Token": token },
    body: JSON.stringify(Object.assign({ action }, params)),
  });
  const body = await r.json().catch(() => ({}));
  if (r.ok) {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    flash(action + ": " + JSON.stringify(body), true);
    if (then) then(body);
  } else {
    flash(action + " refused: " + (body.error || r.status), false);
  }
  return r.ok;
}

function actionButton(label, action, params, confirmText, then) {
  return el("button", {
    class: "danger", "data-action": action, disabled: readOnly,
    onclick: () => { if (!confirmText || window.confirm(confirmText)) act(action, params, then); },
  }, label);
}

function markLive(ok) {
  const l = document.getElementById("live");
  l.textContent = ok ? "live · " + new Date().toLocaleTimeString() : "no answer";
  l.className = ok ? "live" : "live stale";
}

function crumbs(...parts) {
  const n = document.getElementById("crumbs");
  put(n, parts.flatMap((p, i) => (i ? [" / ", p] : [p])));
}

// The rate chart: done and failed jobs per second over the sampled minutes, an inline SVG.
function chart(samples) {
  const W = 1000, H = 200, L = 44, B = 22;
  const s = svg("svg", { id: "chart", class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  const max = Math.max(1, ...samples.map(p => Math.max(p.done, p.failed)));
  const t0 = samples.length ? samples[0].t : Date.now(), t1 = samples.length ? samples[samples.length - 1].t : t0 + 1;
  const x = t => L + (W - L - 8) * ((t - t0) / Math.max(1, t1 - t0));
  const y = v => (H - B) - (H - B - 10) * (v / max);
  for (const f of [0, 0.5, 1]) {
    s.append(svg("line", { class: "grid", x1: L, x2: W, y1: y(max * f), y2: y(max * f) }));
    s.append(svg("text", { x: 4, y: y(max * f) + 4, text: rate(max * f) }));
  }
  s.append(svg("text", { x: L, y: H - 6, text: samples.length ? dur((t1 - t0) / 1000) + " ago" : "sampling…" }));
  s.append(svg("text", { x: W - 30, y: H - 6, text: "now" }));
  for (const [key, cls] of [["done", "done"], ["failed", "failed"]]) {
    const pts = samples.map(p => x(p.t).toFixed(1) + "," + y(p[key]).toFixed(1)).join(" ");
    s.append(svg("polyline", { class: cls, points: pts || `${L},${y(0)} ${W},${y(0)}` }));
  }
  return s;
}

function card(n, label) { return el("div", { class: "card" }, el("div", { class: "n", text: n }), el("div", { class: "l", text: label })); }

function table(head, rows, numeric) {
  return el("table", {},
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { class: numeric && numeric.includes(i) ? "num" : null, text: h })))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: head.length, class: "muted", text: "none" }))]));
}

function td(v, num) { return el("td", { class: num ? "num" : null }, v); }

// ---- fleet ----
async function fleetPage(app) {
  crumbs(el("a", { href: "/", text: "fleet" }));
  const d = await getJSON("/api/fleet");
  setMode(d.read_only);
  const last = d.rates.length ? d.rates[d.rates.length - 1] : { done: 0, failed: 0 };
  const waiting = d.queues.reduce((a, q) => a + (q.waiting || 0), 0);
  const running = d.queues.reduce((a, q) => a + (q.running || 0), 0);
  const oldest = Math.max(0, ...d.queues.map(q => q.oldest_wait_s || 0));
  const workers = d.engines.reduce((a, e) => a + (e.counters.workers || 0), 0);
  put(app,
    el("h1", { text: "Fleet" }),
    d.error ? el("p", { class: "err", text: d.error }) : null,
    el("div", { class: "cards", id: "fleet-cards" },
      card(d.engines.length, "engines alive"), card(workers, "workers"),
      card(rate(last.done), "done"), card(rate(last.failed), "failed"),
      card(waiting, "waiting"), card(running, "running"), card(dur(oldest), "oldest waiting")),
    el("h2", { text: "Jobs per second" }),
    el("div", { class: "legend" }, el("span", { class: "d", text: "— done" }), el("span", { class: "f", text: "— failed" })),
    chart(d.rates),
    el("h2", { text: "Queues" }),
    table(["queue", "waiting", "running", "done", "failed", "done/s", "oldest waiting", "highest id"],
      d.queues.map(q => el("tr", {},
        td(el("a", { href: queueHref(q.circle, q.topic), text: q.circle + "/" + q.topic })),
        td(q.error ? el("span", { class: "err", text: "?" }) : q.waiting, true), td(q.running, true),
        td(q.done, true), td(q.failed, true), td(rate(q.done_per_s), true),
        td(q.oldest_wait_s === null || q.oldest_wait_s === undefined ? "—" : dur(q.oldest_wait_s), true),
        td(q.highest_id, true))), [1, 2, 3, 4, 5, 6, 7]),
    el("h2", { text: "Engines" }),
    table(["engine", "workers", "running", "done", "failed", "timed out", "recovered"],
      d.engines.map(e => el("tr", {}, td(e.name), td(e.counters.workers, true), td(e.counters.running, true),
        td(e.counters.done, true), td(e.counters.error, true), td(e.counters.timed_out, true),
        td(e.counters.recovered, true))), [1, 2, 3, 4, 5, 6]),
    el("p", { class: "muted" }, "Counts are since each engine started; ",
      el("a", { href: "/metrics", text: "/metrics" }), " has them for Prometheus."));
}

// ---- queue ----
async function queuePage(app, c, t) {
  crumbs(el("a", { href: "/", text: "fleet" }), el("a", { href: queueHref(c, t), text: c + "/" + t }));
  const qs = new URLSearchParams(location.search);
  const d = await getJSON("/api/queue/" + enc(c) + "/" + enc(t) + "?" + qs.toString());
  setMode(d.read_only);
  const s = d.summary;
  const status = d.status;
  const tab = st => {
    const p = new URLSearchParams(); if (st !== "all") p.set("status", st);
    return el("a", { href: queueHref(c, t, p.toString()), class: st === status ? "on" : null, text: st });
  };
  const search = el("input", { type: "search", id: "search", placeholder: "job id", value: qs.get("id") || "" });
  const next = d.next ? el("a", { id: "next", href: queueHref(c, t, new URLSearchParams(Object.assign(
    status === "all" ? {} : { status }, d.next, { limit: d.limit })).toString()), text: "older →" }) : null;
  put(app,
    el("h1", { text: "Queue " + c + "/" + t }),
    s.error || d.error ? el("p", { class: "err", text: s.error || d.error }) : null,
    el("div", { class: "cards", id: "queue-cards" },
      card(s.waiting ?? "?", "waiting"), card(s.scheduled ?? "?", "scheduled"), card(s.running ?? "?", "running"),
      card(s.done, "done"), card(s.failed, "failed"), card(s.dead ?? "?", "dead"), card(s.timed_out, "timed out"),
      card(s.highest_id, "highest id"),
      card(rate(s.done_per_s), "done"), card(s.oldest_wait_s == null ? "—" : dur(s.oldest_wait_s), "oldest waiting")),
    el("div", { class: "bar" }, ["all", "new", "active", "done", "error"].map(tab),
      el("form", { onsubmit: ev => { ev.preventDefault(); location.href = queueHref(c, t, search.value ? "id=" + enc(search.value) : ""); } }, search),
      s.paused ? actionButton("resume", "resume", { circle: c, topic: t }, null, () => location.reload())
        : actionButton("pause", "pause", { circle: c, topic: t }, null, () => location.reload()),
      actionButton("purge dead", "purge_dead", { circle: c, topic: t }, "Empty the dead set of " + c + "/" + t + "?"),
      actionButton("empty queue", "empty", { circle: c, topic: t }, "Remove every waiting job of " + c + "/" + t + "?")),
    table(["id", "status", "type", "attempts", "submitted", "ran", "result / error"],
      d.jobs.map(j => el("tr", {},
        td(el("a", { href: jobHref(c, t, j.id), text: "#" + j.id })), td(statusBadge(j.status)), td(j.params_type || ""),
        td(j.attempts ?? "", true), td(ago(j.time_scheduled)),
        td(j.time_end && j.time_start ? dur(j.time_end - j.time_start) : (j.time_start ? "running " + ago(j.time_start) : "—")),
        td(j.error ? el("span", { class: "err", text: j.error }) : (j.result || ""))))),
    el("div", { class: "bar" }, next, el("span", { class: "muted", id: "shown",
      text: d.jobs.length + " shown" + (d.scanned ? " (" + d.scanned + " records read)" : "") })));
}

// ---- job ----
async function jobPage(app, c, t, id) {
  crumbs(el("a", { href: "/", text: "fleet" }), el("a", { href: queueHref(c, t), text: c + "/" + t }),
    el("a", { href: jobHref(c, t, id), text: "#" + id }));
  const d = await getJSON("/api/job/" + enc(c) + "/" + enc(t) + "/" + enc(id));
  setMode(d.read_only);
  const j = d.job;
  const took = j.time_end && j.time_start ? dur(j.time_end - j.time_start) : (j.time_start ? "running for " + ago(j.time_start).replace(" ago", "") : "—");
  const waited = j.time_start ? dur(j.time_start - j.time_scheduled) : "waiting for " + ago(j.time_scheduled).replace(" ago", "");
  put(app,
    el("h1", {}, "Job " + c + "/" + t + "/#" + j.jobid + " ", el("span", { id: "job-status" }, statusBadge(j.status))),
    el("div", { class: "bar" },
      j.status === "error" ? actionButton("retry", "retry", { circle: c, topic: t, id: j.jobid }, null,
        () => { location.reload(); }) : "",
      (j.status === "new" || j.status === "active") ? actionButton("cancel", "cancel", { circle: c, topic: t, id: j.jobid },
        "Cancel job #" + j.jobid + "?", () => { location.reload(); }) : "",
      actionButton("delete job", "delete", { circle: c, topic: t, id: j.jobid },
      "Delete job #" + j.jobid + " everywhere (Redis and OurDB)?", () => { location.href = queueHref(c, t); })),
    el("dl", { class: "kv" },
      el("dt", { text: "type" }), el("dd", { text: j.params_type }),
      el("dt", { text: "submitted by" }), el("dd", { text: d.store || "—" }),
      el("dt", { text: "progress" }), el("dd", { id: "job-progress", text: d.progress || "—" }),
      el("dt", { text: "attempts" }), el("dd", { text: j.attempts }),
      el("dt", { text: "timeout" }), el("dd", { text: j.timeout ? dur(j.timeout) : "engine default" }),
      el("dt", { text: "submitted" }), el("dd", { text: when(j.time_scheduled) }),
      el("dt", { text: "started" }), el("dd", { text: when(j.time_start) }),
      el("dt", { text: "ended" }), el("dd", { text: when(j.time_end) }),
      el("dt", { text: "waited" }), el("dd", { text: waited }),
      el("dt", { text: "ran" }), el("dd", { text: took }),
      el("dt", { text: "read from" }), el("dd", { text: d.source })),
    el("h2", { text: "Params" }), el("pre", { id: "job-params", text: j.params }),
    j.result ? [el("h2", { text: "Result" }), el("pre", { id: "job-result", text: j.result })] : null,
    j.error ? [el("h2", { text: "Error" }), el("pre", { id: "job-error", text: j.error })] : null,
    el("h2", { text: "Logs" }),
    j.logs && j.logs.length ? el("pre", { id: "job-logs", text: j.logs.join("\n") }) : el("p", { class: "muted", text: "no log lines" }),
    el("h2", { text: "History (OurDB versions, newest first)" }),
    d.history_error ? el("p", { class: "err", text: d.history_error }) : null,
    table(["#", "status", "attempt", "started", "ended", "result / error"],
      d.history.map((v, i) => v.unreadable ? el("tr", {}, td(i), td(el("span", { class: "err", text: v.unreadable }))) :
        el("tr", {}, td(i, true), td(statusBadge(v.status)), td(v.attempts, true), td(ago(v.time_start)), td(ago(v.time_end)),
          td(v.error ? el("span", { class: "err", text: v.error }) : v.result))), [0, 2]));
}

async function render() {
  const app = document.getElementById("app");
  const p = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (p[0] === "queue" && p.length === 3) await queuePage(app, p[1], p[2]);
    else if (p[0] === "job" && p.length === 4) await jobPage(app, p[1], p[2], p[3]);
    else await fleetPage(app);
    markLive(true);
  } catch (e) {
    markLive(false);
    flash(String(e.message || e), false);
  }
}

function loop() {
  render().finally(() => {
    // Do not redraw under a user typing in the search box or the token field.
    timer = setTimeout(function again() {
      const a = document.activeElement;
      if (a && (a.id === "search" || a.id === "token")) { timer = setTimeout(again, POLL_MS); return; }
      loop();
    }, POLL_MS);
  });
}

document.getElementById("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
loop();
