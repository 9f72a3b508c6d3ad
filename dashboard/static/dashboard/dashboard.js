/**
 * The dashboard page's only script: fetch data.json now and every few seconds, and draw it.
 *
 * The page (templates/dashboard/dashboard.html) is an empty frame: this fills its tiles, its
 * three charts (charts.js) and its tables. Everything is written with textContent and DOM
 * calls, never innerHTML: route names and URLs are operator input, and the page runs under
 * Content-Security-Policy: default-src 'self'.
 *
 * Polling waits for each answer before planning the next, and pauses while the tab is hidden.
 */

import { drawLineChart } from "./charts.js";

const root = document.getElementById("dashboard");
const source = root.dataset.source;
const refreshMilliseconds = Number(root.dataset.refreshSeconds) * 1000;
const statusLine = document.getElementById("refresh-status");
const SESSION_ENDED = "Your session has ended: reload the page to log in again.";
const DASH = "–";

let latest = null; // the last document, to redraw the charts when their width changes
let timer = null; // the planned next refresh
let fetching = false;

// --- polling -------------------------------------------------------------------------------------

async function refresh() {
  if (fetching) {
    return;
  }
  fetching = true;
  timer = null;
  try {
    const response = await fetch(source, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (response.status === 401 || response.status === 403) {
      showStatus(SESSION_ENDED, true);
    } else if (!response.ok) {
      showStatus(`Update failed (HTTP ${response.status}); trying again.`, true);
    } else {
      latest = await response.json();
      const failed = render(latest);
      const note = failed.length ? ` (could not draw: ${failed.join(", ")})` : "";
      showStatus(`Updated ${clockTime(latest.generated_at)}${note}`, failed.length > 0);
    }
  } catch (error) {
    showStatus(`Update failed (${error.message}); trying again.`, true);
  } finally {
    fetching = false;
  }
  planNextRefresh();
}

function planNextRefresh() {
  if (timer === null && !document.hidden) {
    timer = setTimeout(refresh, refreshMilliseconds);
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden && timer !== null) {
    clearTimeout(timer);
    timer = null;
  } else if (!document.hidden && timer === null) {
    refresh();
  }
});

function showStatus(text, failed) {
  statusLine.textContent = text;
  statusLine.classList.toggle("failed", failed);
}

// --- drawing -------------------------------------------------------------------------------------

// Each part of the page, drawn from the document; one that fails leaves the others drawn.
const PARTS = {
  notice: (data) => renderUnavailable(data.unavailable),
  tiles: renderTiles,
  charts: renderCharts,
  alerts: (data) => renderAlerts(data.alerts),
  targets: (data) => renderTargets(data.services),
  routes: (data) => renderRoutes(data.routes),
  keys: (data) => renderTopKeys(data.top_api_keys),
  tools: (data) => renderTopTools(data.top_tools),
  cache: (data) => renderCache(data.cache),
  pools: (data) => renderPools(data.pools),
  processes: (data) => renderProcesses(data.processes),
};

/** Draw every part; the names of those that failed (each failure is logged to the console). */
function render(data) {
  const failed = [];
  for (const [name, draw] of Object.entries(PARTS)) {
    try {
      draw(data);
    } catch (error) {
      failed.push(name);
      console.error(`dashboard: drawing ${name} failed`, error);
    }
  }
  return failed;
}

function renderUnavailable(unavailable) {
  const notice = document.getElementById("unavailable");
  const parts = Object.entries(unavailable);
  notice.hidden = parts.length === 0;
  notice.textContent = parts.map(([part, reason]) => `${part.replaceAll("_", " ")}: ${reason}`).join(" ");
}

function renderTiles(data) {
  const gateway = data.gateway;
  setText("tile-throughput", rate(gateway.throughput_rps));
  setText("tile-count", count(gateway.count));
  setText("tile-p95", withUnit(milliseconds(gateway.p95_ms), "ms"));
  setText("tile-p99", withUnit(milliseconds(gateway.p99_ms), "ms"));
  setText("tile-error-rate", gateway.count ? percent(gateway.error_rate) : DASH);
  setText("tile-cache", data.cache ? percent(data.cache.hit_rate) : DASH);
  const firing = data.alerts ? data.alerts.firing.length : null;
  setText("tile-alerts", firing === null ? DASH : String(firing));
  document.getElementById("tile-alerts").classList.toggle("alarm", firing > 0);
}

// One entry per chart: which series it draws, from which field, and how its axis reads.
const CHARTS = {
  latency: {
    label: "Latency p50, p95 and p99 over the last hour, in milliseconds",
    series: [
      { className: "series-p50", field: "p50_ms" },
      { className: "series-p95", field: "p95_ms" },
      { className: "series-p99", field: "p99_ms" },
    ],
    format: (value) => milliseconds(value),
  },
  throughput: {
    label: "Requests per second over the last hour",
    series: [{ className: "series-throughput", field: "throughput_rps" }],
    format: (value) => rate(value),
  },
  errors: {
    label: "Error rate over the last hour, in percent",
    // An interval without requests has no error rate: a gap, not a zero.
    series: [{ className: "series-errors", field: "error_rate", scale: 100, skipEmpty: true }],
    format: (value) => String(Number(value.toPrecision(4))), // 0.30000000000000004 reads 0.3
  },
};

function renderCharts(data) {
  const points = data.series;
  const start = points.length ? points[0].t : data.generated_at - 3600;
  const end = points.length > 1 ? points[points.length - 1].t : start + data.interval_seconds;
  for (const area of document.querySelectorAll("[data-chart]")) {
    const chart = CHARTS[area.dataset.chart];
    const series = chart.series.map((line) => ({
      className: line.className,
      points: points.map((point) => [point.t, seriesValue(point, line)]),
    }));
    drawLineChart(area, { label: chart.label, start, end, series, format: chart.format });
  }
}

function seriesValue(point, line) {
  const value = point[line.field];
  if (value === null || (line.skipEmpty && point.count === 0)) {
    return null;
  }
  return value * (line.scale ?? 1);
}

// Redraw a chart when its width changes (a rotated phone, a resized window).
const chartWidths = new Map();
const resizeObserver = new ResizeObserver((entries) => {
  const changed = entries.some((entry) => chartWidths.get(entry.target) !== entry.contentRect.width);
  for (const entry of entries) {
    chartWidths.set(entry.target, entry.contentRect.width);
  }
  if (changed && latest !== null) {
    renderCharts(latest);
  }
});
document.querySelectorAll("[data-chart]").forEach((area) => resizeObserver.observe(area));

function renderAlerts(alerts) {
  const firing = alerts ? alerts.firing : [];
  const empty = document.getElementById("alerts-empty");
  empty.hidden = firing.length > 0;
  empty.textContent = alerts ? `Nothing is firing (${alerts.enabled_rules} rules enabled).` : "Unknown right now.";
  document.getElementById("alerts-table").hidden = firing.length === 0;
  fillTable("alerts-table", firing, "", [
    (alert) => cell(alert.name, "alarm"),
    (alert) => cell(alert.description),
    (alert) => cell(alert.scope),
    (alert) => number(alert.value === null ? DASH : String(alert.value)),
    (alert) => number(String(alert.threshold)),
    (alert) => cell(alert.since ? clockTime(alert.since) : DASH),
  ]);
}

function renderTargets(services) {
  const rows = [];
  for (const service of services) {
    const targets = service.targets.length ? service.targets : [null];
    targets.forEach((target, index) => {
      const row = document.createElement("tr");
      if (index === 0) {
        const name = cell(service.name, "service-name");
        name.rowSpan = targets.length;
        name.append(document.createElement("br"), small(service.lb_policy));
        row.append(name);
      }
      row.append(...(target ? targetCells(target) : [cell("no targets", "muted", 8)]));
      rows.push(row);
    });
  }
  replaceRows("targets-table", rows, "No service yet.");
}

function targetCells(target) {
  const traffic = target.traffic;
  return [
    cell(target.url, "url"),
    badgeCell(target.health, `health-${target.health}`, target.status),
    badgeCell(target.circuit ? target.circuit.replace("_", "-") : DASH, `circuit-${target.circuit ?? "unknown"}`),
    number(target.in_flight ?? DASH),
    number(milliseconds(target.checked_ms)),
    number(rate(traffic.throughput_rps)),
    number(milliseconds(traffic.p95_ms)),
    number(traffic.count ? percent(traffic.error_rate) : DASH),
  ];
}

function renderRoutes(routes) {
  fillTable("routes-table", routes, "No route yet.", [
    (route) => cell(route.enabled ? route.name : `${route.name} (disabled)`, route.enabled ? "" : "muted"),
    (route) => cell(route.path, "url"),
    (route) => cell(route.service),
    (route) => number(count(route.count)),
    (route) => number(rate(route.throughput_rps)),
    (route) => number(milliseconds(route.p95_ms)),
    (route) => number(milliseconds(route.p99_ms)),
    (route) => number(route.count ? percent(route.error_rate) : DASH),
  ]);
}

function renderTopKeys(keys) {
  fillTable("keys-table", keys, "No API key was used in the last 5 minutes.", [
    (key) => cell(key.name ?? `key #${key.id} (deleted)`),
    (key) => number(count(key.count)),
    (key) => number(milliseconds(key.p95_ms)),
    (key) => number(percent(key.error_rate)),
  ]);
}

function renderTopTools(tools) {
  fillTable("tools-table", tools, "No tool was called in the last 5 minutes.", [
    (tool) => cell(tool.name),
    (tool) => number(count(tool.count)),
    (tool) => number(milliseconds(tool.p95_ms)),
    (tool) => number(percent(tool.error_rate)),
  ]);
}

// Pools are per process: each poll may be answered by another worker, with its own pools.
function renderPools(pools) {
  fillTable("pools-table", pools ?? [], pools ? "No upstream connection yet." : "Unavailable right now.", [
    (pool) => cell(pool.origin),
    (pool) => number(pool.in_use),
    (pool) => number(pool.idle),
    (pool) => number(pool.max_size),
    (pool) => number(pool.waits_total),
    (pool) => number(pool.timeouts_total),
  ]);
}

function renderProcesses(processes) {
  fillTable("processes-table", processes, "No process has reported yet.", [
    (process) => cell(process.process),
    (process) => number((process.rss_bytes / 1048576).toFixed(0)),
    (process) => number(process.cpu_percent.toFixed(1)),
    (process) => number(process.in_flight),
  ]);
}

function renderCache(cache) {
  const facts = document.getElementById("cache-facts");
  if (!cache) {
    facts.replaceChildren(fact("Statistics", "unavailable"));
    return;
  }
  facts.replaceChildren(
    fact("Hit rate", percent(cache.hit_rate)),
    fact("Hits", count(cache.hits)),
    fact("Misses", count(cache.misses)),
    fact("Evictions", count(cache.evictions)),
    fact("Entries", count(cache.size)),
  );
}

// --- table and text helpers ----------------------------------------------------------------------

function fillTable(id, items, emptyText, columns) {
  const rows = items.map((item) => {
    const row = document.createElement("tr");
    row.append(...columns.map((column) => column(item)));
    return row;
  });
  replaceRows(id, rows, emptyText);
}

function replaceRows(id, rows, emptyText) {
  const table = document.getElementById(id);
  if (rows.length === 0 && emptyText) {
    const row = document.createElement("tr");
    row.append(cell(emptyText, "muted", table.tHead.rows[0].cells.length));
    rows = [row];
  }
  table.tBodies[0].replaceChildren(...rows);
}

function cell(text, className = "", columnSpan = 1) {
  const element = document.createElement("td");
  element.textContent = text;
  if (className) {
    element.className = className;
  }
  element.colSpan = columnSpan;
  return element;
}

function number(text) {
  return cell(String(text), "num");
}

function badgeCell(text, className, title) {
  const element = document.createElement("td");
  const badge = document.createElement("span");
  badge.className = `badge ${className}`;
  badge.textContent = text;
  if (title) {
    badge.title = title;
  }
  element.append(badge);
  return element;
}

function small(text) {
  const element = document.createElement("small");
  element.textContent = text;
  return element;
}

function fact(term, value) {
  const wrapper = document.createElement("div");
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = value;
  wrapper.append(dt, dd);
  return wrapper;
}

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

function count(value) {
  return Number(value).toLocaleString();
}

function milliseconds(value) {
  if (value === null || value === undefined) {
    return DASH;
  }
  return value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString();
}

function withUnit(text, unit) {
  return text === DASH ? DASH : `${text} ${unit}`;
}

function rate(perSecond) {
  return perSecond < 10 ? perSecond.toFixed(2) : perSecond.toFixed(1);
}

function percent(fraction) {
  const value = fraction * 100;
  return `${value < 1 && value > 0 ? value.toFixed(2) : value.toFixed(1)}%`;
}

function clockTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString();
}

refresh();
