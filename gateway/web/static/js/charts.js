// Bar charts as inline SVG (no library): one bar per bucket, values are decimal-string credits.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

/** Decimal string → number for drawing only (bar heights); the figures shown stay the strings. */
function magnitude(value) {
  const n = Number.parseFloat(value);
  return Number.isFinite(n) ? n : 0;
}

/** buckets: [{key, spend, count}] → a figure with an SVG bar chart and a data table for screen readers. */
export function barChart(title, buckets, { label = (b) => b.key, value = (b) => b.spend } = {}) {
  const width = 640;
  const height = 300;
  const pad = { top: 20, right: 12, bottom: 92, left: 72 };
  const short = (text) => (text.length > 18 ? `${text.slice(0, 17)}…` : text);
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const max = Math.max(0, ...buckets.map((b) => magnitude(value(b))));
  const step = buckets.length ? innerW / buckets.length : innerW;
  const barW = Math.max(2, Math.min(48, step * 0.7));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, preserveAspectRatio: "xMidYMid meet" });
  chart.append(svg("line", { class: "axis", x1: pad.left, y1: pad.top + innerH, x2: width - pad.right, y2: pad.top + innerH }));
  chart.append(svg("text", { x: pad.left - 6, y: pad.top + 4, "text-anchor": "end" }, max ? String(Math.round(max * 1000) / 1000) : "0"));
  chart.append(svg("text", { x: pad.left - 6, y: pad.top + innerH, "text-anchor": "end" }, "0"));
  buckets.forEach((bucket, i) => {
    const v = magnitude(value(bucket));
    const barH = max ? (v / max) * innerH : 0;
    const x = pad.left + i * step + (step - barW) / 2;
    const bar = svg("rect", { class: "bar", x, y: pad.top + innerH - barH, width: barW, height: Math.max(barH, v > 0 ? 1 : 0), "data-key": bucket.key, "data-value": value(bucket) });
    bar.append(svg("title", {}, `${label(bucket)}: ${value(bucket)}`));
    chart.append(bar);
    if (v > 0 && buckets.length <= 16) {
      chart.append(svg("text", { x: x + barW / 2, y: pad.top + innerH - barH - 4, "text-anchor": "middle" }, value(bucket)));
    }
    if (buckets.length <= 16 || i % Math.ceil(buckets.length / 16) === 0) {
      chart.append(svg("text", { x: x + barW / 2, y: pad.top + innerH + 14, "text-anchor": "end", transform: `rotate(-35 ${x + barW / 2} ${pad.top + innerH + 14})` }, short(label(bucket))));
    }
  });
  return h("figure", { class: "chart" }, h("figcaption", {}, title), chart);
}
