/**
 * A small SVG line chart, built with DOM calls only (createElementNS, setAttribute): no
 * innerHTML, no inline styles, so it works under Content-Security-Policy: default-src 'self'.
 * Colours and line widths come from dashboard.css through class names.
 *
 *   drawLineChart(element, {
 *     label: "Latency over the last hour",
 *     start: 1700000000, end: 1700003600,            // the time axis, epoch seconds
 *     series: [{className: "series-p95", points: [[t, valueOrNull], ...]}, ...],
 *     format: (value) => value.toFixed(1),           // the value axis' labels
 *   });
 *
 * The chart is as wide as ``element`` is now; call again to redraw (new data, new width).
 * A null value leaves a gap in its line; a point with gaps on both sides is drawn as a dot
 * (one busy interval in a quiet hour must still show).
 */

const SVG_NS = "http://www.w3.org/2000/svg";
const HEIGHT = 180;
const MARGIN = { top: 10, right: 12, bottom: 22, left: 46 };
const MIN_WIDTH = 160;
const VALUE_TICKS = 4;
// Time-axis steps to choose from (seconds), and the least room one label needs (pixels).
const TIME_STEPS = [60, 300, 600, 900, 1200, 1800, 3600];
const PIXELS_PER_TIME_LABEL = 64;
const NO_DATA_TEXT = "No traffic in the last hour";
const DOT_RADIUS = 2.5;

export function drawLineChart(container, { label, start, end, series, format }) {
  const width = Math.max(container.clientWidth, MIN_WIDTH);
  const svg = svgElement("svg", {
    class: "line-chart",
    width,
    height: HEIGHT,
    viewBox: `0 0 ${width} ${HEIGHT}`,
    role: "img",
    "aria-label": label,
  });
  const plot = { left: MARGIN.left, right: width - MARGIN.right, top: MARGIN.top, bottom: HEIGHT - MARGIN.bottom };
  const span = Math.max(end - start, 1);
  const step = niceStep(largestValue(series) / VALUE_TICKS);
  const top = step * VALUE_TICKS;
  const x = (t) => plot.left + ((t - start) / span) * (plot.right - plot.left);
  const y = (value) => plot.bottom - (value / top) * (plot.bottom - plot.top);

  drawValueAxis(svg, plot, step, y, format);
  drawTimeAxis(svg, plot, start, end, x);
  let drawn = 0;
  for (const line of series) {
    const d = pathData(line.points, x, y);
    if (d) {
      svg.append(svgElement("path", { class: `line ${line.className}`, d }));
      drawn += 1;
    }
    for (const [t, value] of lonePoints(line.points)) {
      svg.append(svgElement("circle", { class: `dot ${line.className}`, cx: x(t), cy: y(value), r: DOT_RADIUS }));
    }
  }
  if (drawn === 0) {
    svg.append(svgText(NO_DATA_TEXT, { class: "no-data", x: (plot.left + plot.right) / 2, y: (plot.top + plot.bottom) / 2 }));
  }
  container.replaceChildren(svg);
}

/** The smallest 1, 2 or 5 times a power of ten that is at least ``raw`` (1 for nothing). */
export function niceStep(raw) {
  if (!(raw > 0)) {
    return 1;
  }
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const multiple of [1, 2, 5, 10]) {
    if (multiple * magnitude >= raw) {
      return multiple * magnitude;
    }
  }
  return 10 * magnitude;
}

function largestValue(series) {
  let largest = 0;
  for (const line of series) {
    for (const [, value] of line.points) {
      if (value !== null && value > largest) {
        largest = value;
      }
    }
  }
  return largest;
}

function drawValueAxis(svg, plot, step, y, format) {
  for (let tick = 0; tick <= VALUE_TICKS; tick += 1) {
    const value = tick * step;
    const at = y(value);
    svg.append(svgElement("line", { class: tick === 0 ? "axis" : "grid", x1: plot.left, x2: plot.right, y1: at, y2: at }));
    svg.append(svgText(format(value), { class: "tick-label value-label", x: plot.left - 6, y: at + 4 }));
  }
}

function drawTimeAxis(svg, plot, start, end, x) {
  const room = Math.floor((plot.right - plot.left) / PIXELS_PER_TIME_LABEL);
  const step = TIME_STEPS.find((seconds) => (end - start) / seconds <= room) ?? TIME_STEPS[TIME_STEPS.length - 1];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) {
    svg.append(svgElement("line", { class: "tick", x1: x(t), x2: x(t), y1: plot.bottom, y2: plot.bottom + 4 }));
    svg.append(svgText(clockTime(t), { class: "tick-label time-label", x: x(t), y: plot.bottom + 16 }));
  }
}

/** The path through ``points``, broken where a value is null (a lone point is a move only). */
function pathData(points, x, y) {
  const parts = [];
  points.forEach(([t, value], index) => {
    if (value !== null) {
      const command = index > 0 && points[index - 1][1] !== null ? "L" : "M";
      parts.push(`${command}${x(t).toFixed(1)} ${y(value).toFixed(1)}`);
    }
  });
  return parts.join("");
}

/** The points with no value on either side: no line reaches them. */
function lonePoints(points) {
  const missing = (index) => index < 0 || index >= points.length || points[index][1] === null;
  return points.filter(([, value], index) => value !== null && missing(index - 1) && missing(index + 1));
}

function clockTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [attribute, value] of Object.entries(attributes)) {
    element.setAttribute(attribute, String(value));
  }
  return element;
}

function svgText(text, attributes) {
  const element = svgElement("text", attributes);
  element.textContent = text;
  return element;
}
