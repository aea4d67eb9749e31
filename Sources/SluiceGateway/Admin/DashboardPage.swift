/// The dashboard (`/` and `/admin/ui` on the admin listener): one self-contained page, inline
/// CSS and JavaScript, no CDN, so it works offline and from an air-gapped cluster. It polls
/// `/admin/stats` every second and draws sparklines as inline SVG.
///
/// The page holds no data, so it is served without the admin token; with `admin.token` set it
/// asks for the token once, keeps it in the tab's `sessionStorage` (gone when the tab closes)
/// and sends it as `Authorization: Bearer` with each poll. A link may carry it in the fragment
/// (`/#token=…`, never sent to a server or written to its logs); the page then drops it from the
/// address bar. Everything the gateway reports is inserted as text, never as HTML: endpoint and
/// adapter names come from model servers.
enum DashboardPage {
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

    static let bytes: [UInt8] = Array(html.utf8)

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice</title>
<style>
:root { --bg:#0f1419; --panel:#171d24; --line:#26303b; --text:#d6dde5; --dim:#7d8a97; --accent:#4fb3ff;
        --ok:#3fbf7f; --bad:#ff5d5d; --warn:#f2b84b; --p90:#c48cff; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--text); font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
header { display:flex; align-items:center; gap:18px; padding:12px 20px; border-bottom:1px solid var(--line); flex-wrap:wrap; }
header h1 { font-size:18px; margin:0; letter-spacing:.5px; }
header .meta { color:var(--dim); font-size:13px; }
#status { margin-left:auto; font-size:13px; padding:2px 10px; border-radius:10px; background:var(--panel); }
#status[data-state=live] { color:var(--ok); } #status[data-state=stale], #status[data-state=error] { color:var(--bad); }
#status[data-state=token] { color:var(--warn); }
main { padding:16px 20px; display:grid; gap:16px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(220px, 1fr)); gap:12px; }
.card, section { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .label { color:var(--dim); font-size:12px; text-transform:uppercase; letter-spacing:.6px; }
.card .value { font-size:26px; font-variant-numeric:tabular-nums; margin:2px 0 4px; }
.card svg, td svg, .mini svg { display:block; }
.mini { padding:4px 0 8px; }
section h2 { font-size:15px; margin:0 0 8px; display:flex; gap:14px; align-items:baseline; flex-wrap:wrap; }
section h2 .sub { font-size:12px; color:var(--dim); font-weight:normal; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th { text-align:left; color:var(--dim); font-weight:normal; font-size:12px; padding:4px 8px; border-bottom:1px solid var(--line); }
td { padding:5px 8px; border-bottom:1px solid var(--line); vertical-align:middle; }
tr:last-child td { border-bottom:none; }
.dot { display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:6px; }
.up { background:var(--ok); } .down { background:var(--bad); }
.bar { width:90px; height:8px; background:var(--line); border-radius:4px; overflow:hidden; display:inline-block; vertical-align:middle; margin-right:6px; }
.bar > span { display:block; height:100%; background:var(--accent); }
.dim { color:var(--dim); }
.row2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(320px, 1fr)); gap:16px; }
.tag { display:inline-block; padding:0 6px; margin:1px 2px; border-radius:4px; background:var(--line); font-size:12px; }
.tag.run { background:#1d4d36; }
#token-form { display:none; gap:8px; align-items:center; }
#token-form input { background:var(--bg); color:var(--text); border:1px solid var(--line); border-radius:4px; padding:4px 8px; }
#token-form button { background:var(--accent); color:#000; border:0; border-radius:4px; padding:4px 10px; cursor:pointer; }
</style>
</head>
<body>
<header>
  <h1>Sluice</h1>
  <span class="meta" id="config">config —</span>
  <span class="meta" id="reload">last reload —</span>
  <span class="meta" id="process">—</span>
  <form id="token-form"><label for="token">Admin token</label><input id="token" type="password" autocomplete="off"><button type="submit">Use</button></form>
  <span id="status" data-state="loading">connecting…</span>
</header>
<main>
  <div class="cards">
    <div class="card"><div class="label">Requests / s</div><div class="value" id="rps-now">—</div><div id="rps-spark"></div></div>
    <div class="card"><div class="label">Errors / s (5xx)</div><div class="value" id="err-now">—</div><div id="err-spark"></div></div>
    <div class="card"><div class="label">TTFT p50</div><div class="value" id="p50-now">—</div><div id="p50-spark"></div></div>
    <div class="card"><div class="label">TTFT p90</div><div class="value" id="p90-now">—</div><div id="p90-spark"></div></div>
  </div>
  <div id="pools"></div>
  <div class="row2">
    <section><h2>Rate limits <span class="sub" id="limit-rules"></span></h2><table id="limits"></table></section>
    <section><h2>Response cache <span class="sub" id="cache-state"></span></h2><table id="cache"></table></section>
  </div>
  <section><h2>Splits</h2><table id="splits"></table></section>
</main>
<script>
"use strict";
const KEY = "sluice-admin-token";
const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
if (m) { sessionStorage.setItem(KEY, decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
function $(id) { return document.getElementById(id); }
function fix(v, d) { return v === null || v === undefined ? "—" : Number(v).toFixed(d); }
function ms(v) { return v === null || v === undefined ? "—" : v < 1 ? (v * 1000).toFixed(0) + " ms" : v.toFixed(2) + " s"; }
function pct(v) { return (100 * (v || 0)).toFixed(0) + "%"; }
function last(a) { for (let i = (a || []).length - 1; i >= 0; i--) if (a[i] !== null) return a[i]; return null; }
function ago(t) { const s = Math.max(0, Math.round(Date.now() / 1000 - t)); return s < 90 ? s + " s ago" : Math.round(s / 60) + " min ago"; }

const NS = "http://www.w3.org/2000/svg";
// A sparkline of `points` (nulls are gaps) over the last minute, scaled to its own maximum.
function spark(points, color, w, h) {
  w = w || 200; h = h || 36;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", "100%"); svg.setAttribute("height", h); svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none"); svg.setAttribute("class", "spark");
  const n = 60, vals = (points || []).slice(-n);
  const max = Math.max(1e-9, ...vals.filter(v => v !== null));
  let d = "", pen = false;
  vals.forEach((v, i) => {
    if (v === null) { pen = false; return; }
    const x = (w - 2) * (n - vals.length + i) / (n - 1) + 1, y = h - 2 - (h - 4) * v / max;
    d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1); pen = true;
  });
  const base = document.createElementNS(NS, "line");
  base.setAttribute("x1", 0); base.setAttribute("x2", w); base.setAttribute("y1", h - 1); base.setAttribute("y2", h - 1);
  base.setAttribute("stroke", "#26303b");
  svg.append(base);
  const path = document.createElementNS(NS, "path");
  path.setAttribute("d", d); path.setAttribute("fill", "none"); path.setAttribute("stroke", color); path.setAttribute("stroke-width", "1.6");
  path.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(path);
  return svg;
}
function card(id, series, fmt, color) {
  $(id + "-now").textContent = fmt(last(series));
  $(id + "-spark").replaceChildren(spark(series, color));
}

function renderPool(p) {
  const head = el("tr", {}, ...["endpoint", "health", "in flight", "waiting", "running", "KV cache", "prefix cache hits", "adapters", "telemetry"].map(h => el("th", {}, h)));
  const rows = p.endpoints.map(e => {
    const adapters = el("td", {});
    for (const a of e.adapters_running) adapters.append(el("span", { class: "tag run", title: "running" }, a));
    for (const a of e.adapters_waiting) adapters.append(el("span", { class: "tag", title: "waiting" }, a + " (waiting)"));
    for (const a of e.adapters_loaded) if (!e.adapters_running.includes(a) && !e.adapters_waiting.includes(a)) adapters.append(el("span", { class: "tag", title: "loaded" }, a));
    if (!adapters.childNodes.length) adapters.append(el("span", { class: "dim" }, "—"));
    return el("tr", { "data-endpoint": e.endpoint, "data-healthy": String(e.healthy) },
      el("td", {}, e.endpoint),
      el("td", {}, el("span", { class: "dot " + (e.healthy ? "up" : "down") }), e.healthy ? "healthy" : "ejected" + (e.consecutive_failures ? ` (${e.consecutive_failures} failures)` : "")),
      el("td", { class: "inflight" }, e.inflight),
      el("td", {}, e.waiting),
      el("td", {}, e.running),
      el("td", {}, el("span", { class: "bar" }, el("span", { style: `width:${Math.min(100, 100 * e.kv_use).toFixed(0)}%` })), pct(e.kv_use)),
      el("td", {}, pct(e.prefix_cache_hit_rate)),
      adapters,
      el("td", { class: "dim" }, e.telemetry_age_seconds < 0 ? "not scraped" : fix(e.telemetry_age_seconds, 1) + " s"));
  });
  const stats = el("div", { class: "cards" },
    ...[["requests / s", p.requests_per_second, v => fix(v, 1), "#4fb3ff"], ["errors / s", p.errors_per_second, v => fix(v, 2), "#ff5d5d"],
        ["TTFT p50", p.ttft_p50_seconds, ms, "#3fbf7f"], ["TTFT p90", p.ttft_p90_seconds, ms, "#c48cff"]]
      .map(([label, s, f, c]) => el("div", { class: "mini" }, el("div", {}, el("span", { class: "dim" }, label + " "), el("b", {}, f(last(s)))), spark(s, c, 180, 26))));
  return el("section", { "data-pool": p.name },
    el("h2", {}, "Pool " + p.name,
      el("span", { class: "sub" }, `routing ${p.routing}` + (p.discovery ? `, ${p.discovery}` : "") + `, ${p.endpoints.length} endpoint(s)`),
      el("span", { class: "sub" }, "prefix hits (routing): " + (p.prefix_hit_share === null ? "—" : pct(p.prefix_hit_share)))),
    stats, el("table", { class: "endpoints" }, head, ...rows));
}

function outcomes(table, o) {
  table.replaceChildren(el("tr", {}, el("th", {}, "outcome"), el("th", {}, "total"), el("th", {}, "per second")),
    ...Object.entries(o).map(([k, v]) => el("tr", { "data-outcome": k }, el("td", {}, k), el("td", {}, v.total), el("td", {}, fix(v.per_second, 2)))));
}

function render(s) {
  const c = s.config;
  $("config").textContent = `config generation ${c.generation} · ${c.source}${c.digest ? " · " + c.digest.slice(0, 8) : ""}`;
  const r = c.last_reload;
  $("reload").textContent = r.result === "none" ? "no reload yet" : `last reload ${r.result} ${ago(r.at)}`;
  $("reload").title = r.error || "";
  $("reload").style.color = r.result === "failed" ? "var(--bad)" : "";
  $("process").textContent = `${s.workers} worker(s), ${s.connections} client connection(s)`;
  const t = s.totals;
  card("rps", t.requests_per_second, v => fix(v, 1), "#4fb3ff");
  card("err", t.errors_per_second, v => fix(v, 2), "#ff5d5d");
  card("p50", t.ttft_p50_seconds, ms, "#3fbf7f");
  card("p90", t.ttft_p90_seconds, ms, "#c48cff");
  $("pools").replaceChildren(...s.pools.map(renderPool));
  $("pools").style.cssText = "display:grid;gap:16px";
  $("limit-rules").textContent = s.rate_limit_rules ? `${s.rate_limit_rules} rule(s)` : "no rules";
  $("cache-state").textContent = s.cache_enabled ? "enabled" : "off";
  outcomes($("limits"), s.rate_limits);
  outcomes($("cache"), s.cache);
  const splits = $("splits");
  if (!s.splits.length) { splits.replaceChildren(el("tr", {}, el("td", { class: "dim" }, "no splits configured"))); }
  else splits.replaceChildren(el("tr", {}, ...["model", "arm", "weight", "requests", "sticky", "guard"].map(h => el("th", {}, h))),
    ...s.splits.flatMap(sp => sp.arms.map((a, i) => el("tr", { "data-split": sp.model },
      el("td", {}, i ? "" : sp.model), el("td", {}, a.model),
      el("td", {}, el("span", { class: "bar" }, el("span", { style: `width:${(100 * a.weight_share).toFixed(0)}%` })), pct(a.weight_share)),
      el("td", {}, a.requests), el("td", { class: "dim" }, i ? "" : sp.sticky), el("td", { class: "dim" }, i ? "" : (sp.guard === null ? "—" : sp.guard.state + (sp.guard.arms.some(g => g.why) ? ": " + sp.guard.arms.filter(g => g.why).map(g => g.model + " " + g.why).join("; ") : "")))))));
}

function status(state, text) { const e = $("status"); e.dataset.state = state; e.textContent = text; }
let okAt = 0;
async function poll() {
  const token = sessionStorage.getItem(KEY);
  try {
    const res = await fetch("/admin/stats", { cache: "no-store", headers: token ? { Authorization: "Bearer " + token } : {} });
    if (res.status === 401) {
      if (token) sessionStorage.removeItem(KEY);
      $("token-form").style.display = "flex";
      status("token", token ? "wrong token" : "admin token needed");
      return;
    }
    if (!res.ok) throw new Error("HTTP " + res.status);
    render(await res.json());
    okAt = Date.now();
    $("token-form").style.display = "none";
    status("live", "live");
  } catch (e) {
    status(Date.now() - okAt > 5000 ? "error" : "stale", "cannot reach the gateway (" + e.message + ")");
  }
}
$("token-form").addEventListener("submit", ev => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, $("token").value);
  $("token").value = "";
  poll();
});
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
"""#
}
