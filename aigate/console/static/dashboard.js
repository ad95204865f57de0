// The dashboard: reads /api/dashboard (summed from the rollups) and draws uPlot charts
// with values on hover (uPlot's legend follows the cursor).
"use strict";

const RANGES = {"1h": [3600e3, "minute"], "24h": [86400e3, "hour"], "7d": [7 * 86400e3, "hour"], "30d": [30 * 86400e3, "day"]};
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const fmt = (field, v) => v == null ? "–" : field === "used_amount" ? Number(v).toFixed(6) : Number(v).toLocaleString();

function axisLabel(field, v) {
  if (field !== "used_amount") return Number(v).toLocaleString();
  return v === 0 ? "0" : Number(v).toPrecision(2);
}

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); }

function fillTable(id, entries, key) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  for (const e of entries) {
    const tr = document.createElement("tr");
    cell(tr, e[key] || "(none)");
    for (const f of ["requests", "errors", "total_tokens", "used_amount"]) cell(tr, fmt(f, e.totals[f]));
    body.appendChild(tr);
  }
  if (!entries.length) { const tr = document.createElement("tr"); cell(tr, "No calls in this range."); body.appendChild(tr); }
}

function draw(el, data, charts) {
  const field = el.dataset.chart, by = el.dataset.by;
  const xs = data.timestamps.map((t) => t / 1000);
  const groups = by ? data[by].slice(0, 8) : [{series: data.series}];
  const key = by === "by_model" ? "model" : "strategy";
  const series = [{}].concat(groups.map((g, i) => ({
    label: by ? (g[key] || "(none)") : field,
    stroke: COLORS[i % COLORS.length],
    width: 2,
    value: (u, v) => fmt(field, v),
  })));
  const opts = {
    width: Math.max(280, el.clientWidth || 300), height: 200, series,
    axes: [{}, {size: field === "used_amount" ? 80 : 60, values: (u, vals) => vals.map((v) => axisLabel(field, v))}],
    scales: {x: {time: true}},
    cursor: {focus: {prox: 16}},
  };
  const chart = new uPlot(opts, [xs].concat(groups.map((g) => g.series[field])), el);
  charts.push([chart, el]);
}

async function loadDashboard() {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const [span, timespan] = RANGES[root.dataset.range] || RANGES["24h"];
  const end = Date.now();
  const params = new URLSearchParams({start_timestamp: String(end - span), end_timestamp: String(end), timespan});
  if (root.dataset.app) params.set("group", root.dataset.app);
  const status = document.getElementById("dash-status");
  const res = await fetch(`/api/dashboard?${params}`, {credentials: "same-origin"});
  const doc = await res.json();
  if (!doc.success) { status.textContent = doc.message; status.className = "error"; return; }
  const data = doc.data;
  status.textContent = `${new Date(data.start_timestamp).toISOString().slice(0, 16)} – ${new Date(data.end_timestamp).toISOString().slice(0, 16)} UTC, by ${data.timespan}`;
  root.dataset.loaded = "true";
  for (const el of root.querySelectorAll("[data-total]")) el.textContent = fmt(el.dataset.total, data.totals[el.dataset.total]);
  fillTable("by-model", data.by_model, "model");
  fillTable("by-strategy", data.by_strategy, "strategy");
  const charts = [];
  root.querySelectorAll("[data-chart]").forEach((el) => draw(el, data, charts));
  window.addEventListener("resize", () => charts.forEach(([c, el]) => c.setSize({width: Math.max(280, el.clientWidth), height: 200})));
}

document.addEventListener("DOMContentLoaded", loadDashboard);
