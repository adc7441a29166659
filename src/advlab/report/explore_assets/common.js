"use strict";
// advlab explore: shared helpers (decoding the embedded data, numbers, SVG and canvas drawing).
const DATA = JSON.parse(document.getElementById("explore-data").textContent);
const SVGNS = "http://www.w3.org/2000/svg";
const COLORS = { neg: "#2166ac", pos: "#b2182b", accent: "#d9822b", ink: "#1d2330", muted: "#8a93a3", grid: "#e6e9ef", good: "#1a7f37" };

function $(id) { return document.getElementById(id); }

function decode(b64, Type) {
  const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  return new Type(bytes.buffer);
}

function sigmoid(z) { return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)); }

// Probabilities are truncated to 4 decimals: 0.99988 shows 0.9998, never a premature 1.0000.
function prob4(p) { return (Math.floor(p * 1e4 + 1e-9) / 1e4).toFixed(4); }

function fixed(v, digits) { return (Math.abs(v) < 0.5 * Math.pow(10, -digits) ? 0 : v).toFixed(digits); }

function signed(v, digits) { const s = fixed(v, digits); return v > 0 && Number(s) !== 0 ? "+" + s : s; }

function percent(k, n) { return (100 * k / n).toFixed(2) + "%"; }

// Seeded uniform numbers in [0, 1) (mulberry32): the page's random draws are reproducible.
function rng(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function svg(parent, tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  attrs = Object.assign({}, attrs);
  if (tag === "text" && !attrs.fill) attrs.fill = attrs.class === "label" ? COLORS.ink : "#5b6475";
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  parent.appendChild(node);
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

// A linear map from [d0, d1] to [r0, r1].
function scale(d0, d1, r0, r1) { return (v) => r0 + (v - d0) * (r1 - r0) / (d1 - d0); }

// Axis ticks: about `count` round values covering [lo, hi].
function ticks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number((Math.round(v / step) * step).toPrecision(12)));
  return out;
}

// A tick's label, short at any size: 2e+6 rather than 2000000.
function tickLabel(t) { return Math.abs(t) >= 1e4 ? t.toExponential() : String(t); }

// Grayscale digit: 0 white, 1 black (ink on paper).
function drawGray(canvas, values) {
  drawPixels(canvas, values.length, (i) => { const g = Math.round(255 * (1 - values[i])); return [g, g, g]; });
}

// Diverging colours: negative blue, 0 white, positive red, |v| >= maxAbs at full colour.
function drawDiverging(canvas, values, maxAbs) {
  const neg = [33, 102, 172], pos = [178, 24, 43];
  drawPixels(canvas, values.length, (i) => {
    const t = Math.max(-1, Math.min(1, values[i] / (maxAbs || 1)));
    const c = t < 0 ? neg : pos, a = Math.abs(t);
    return c.map((ch) => Math.round(255 + (ch - 255) * a));
  });
}

function drawPixels(canvas, n, colorAt) {
  const side = Math.round(Math.sqrt(n));
  const small = document.createElement("canvas");
  small.width = side; small.height = side;
  const ctx = small.getContext("2d");
  const img = ctx.createImageData(side, side);
  for (let i = 0; i < n; i++) {
    const [r, g, b] = colorAt(i);
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = false;
  out.clearRect(0, 0, canvas.width, canvas.height);
  out.drawImage(small, 0, 0, canvas.width, canvas.height);
}

function maxAbs(values) { let m = 0; for (const v of values) m = Math.max(m, Math.abs(v)); return m; }
