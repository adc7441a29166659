// Panel 2: Goodfellow et al. 2014, Fig. 2 live. For test image x with label y (1 = second class),
// the worst point of the L-inf ball in the box is clip(x + eps * s * sign(w)), s = +1 for label 0,
// -1 for label 1: the logit is a sum of one-pixel terms, so each pixel is pushed on its own.
(function fig2() {
  const F = DATA.fig2, D = 784, n = F.n;
  const w = decode(F.weight, Float64Array), b = F.bias;
  const raw = decode(F.images, Uint8Array);
  const x = new Float64Array(raw.length);
  for (let i = 0; i < raw.length; i++) x[i] = raw[i] / 255;
  const labels = F.labels, names = F.classes.map(String);
  const sw = w.map(Math.sign);
  // equal-norm random noise: one fixed random sign pattern per test image
  const noise = new Int8Array(n * D);
  for (let j = 0; j < n; j++) { const r = rng(1000 + j); for (let i = 0; i < D; i++) noise[j * D + i] = r() < 0.5 ? -1 : 1; }
  const eps = $("f2-eps");
  const grid = Array.from({ length: 51 }, (_, k) => k / 100);
  let current = labels.indexOf(1) >= 0 ? labels.indexOf(1) : 0;

  const worst = (j) => { const s = labels[j] === 1 ? -1 : 1; return (i) => s * sw[i]; };
  const random = (j) => (i) => noise[j * D + i];
  const wrong = (j, z) => (z > 0 ? 1 : 0) !== labels[j];

  // The logit of image j moved by e (0 <= e <= 1) along a sign pattern d, clipped to [0, 1]:
  // z(e) = w.x + b + e * K + sum over the pixels strictly inside (0, 1) of w_i (clip(x_i + e d_i) - x_i),
  // where K = sum of w_i over pixels at 0 with d_i > 0, minus the w_i at 1 with d_i < 0 (the
  // others cannot move). MNIST is mostly 0s, so only the ~150 grey pixels of an image are summed.
  const start = new Int32Array(n + 1), grey = [];
  const z0 = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let z = b;
    for (let i = 0; i < D; i++) { const v = x[j * D + i]; z += w[i] * v; if (v > 0 && v < 1) grey.push(i); }
    z0[j] = z;
    start[j + 1] = grey.length;
  }
  function prepare(dir) {
    const K = new Float64Array(n), d = new Int8Array(grey.length);
    for (let j = 0; j < n; j++) {
      const dj = dir(j);
      for (let i = 0; i < D; i++) {
        const v = x[j * D + i], di = dj(i);
        if ((v === 0 && di > 0) || (v === 1 && di < 0)) K[j] += di * w[i];
      }
      for (let k = start[j]; k < start[j + 1]; k++) d[k] = dj(grey[k]);
    }
    return { K, d };
  }
  const kinds = new Map([[worst, prepare(worst)], [random, prepare(random)]]);
  function logit(j, e, dir) {
    const { K, d } = kinds.get(dir);
    let z = z0[j] + e * K[j];
    for (let k = start[j]; k < start[j + 1]; k++) {
      const i = grey[k], v = x[j * D + i];
      const moved = v + e * d[k];
      z += w[i] * ((moved < 0 ? 0 : moved > 1 ? 1 : moved) - v);
    }
    return z;
  }

  function errors(e, dir) { let k = 0; for (let j = 0; j < n; j++) if (wrong(j, logit(j, e, dir))) k++; return k; }
  const worstCurve = grid.map((e) => errors(e, worst));
  const noiseCurve = grid.map((e) => errors(e, random));
  $("f2-curve").dataset.worst = worstCurve.join(",");  // misclassified counts at eps = 0, .01, ..., .5

  function perturbed(j, e, dir) {
    const out = new Float64Array(D), d = dir(j);
    for (let i = 0; i < D; i++) out[i] = Math.min(1, Math.max(0, x[j * D + i] + e * d(i)));
    return out;
  }

  function drawCurve(e, kWorst, kNoise) {
    const root = $("f2-curve");
    clear(root);
    const W = 460, H = 270, left = 44, right = 14, top = 14, bottom = 40;
    const xs = scale(0, 0.5, left, W - right), ys = scale(0, 1, H - bottom, top);
    for (const t of ticks(0, 1, 5)) {
      svg(root, "line", { x1: left, x2: W - right, y1: ys(t), y2: ys(t), stroke: COLORS.grid });
      svg(root, "text", { x: left - 6, y: ys(t) + 4, "text-anchor": "end" }, Math.round(100 * t) + "%");
    }
    for (const t of ticks(0, 0.5, 5)) svg(root, "text", { x: xs(t), y: H - bottom + 16, "text-anchor": "middle" }, String(t));
    svg(root, "text", { x: (left + W - right) / 2, y: H - 6, "text-anchor": "middle" }, "\u03b5 (L\u221e budget, pixels in [0, 1])");
    const line = (curve, color, dash) => svg(root, "path", {
      d: curve.map((k, i) => (i ? "L" : "M") + xs(grid[i]).toFixed(1) + " " + ys(k / n).toFixed(1)).join(""),
      fill: "none", stroke: color, "stroke-width": 2.5, "stroke-dasharray": dash || "none" });
    line(worstCurve, COLORS.pos);
    line(noiseCurve, COLORS.neg, "5 4");
    svg(root, "line", { x1: xs(e), x2: xs(e), y1: top, y2: H - bottom, stroke: COLORS.accent, "stroke-width": 1.5 });
    svg(root, "circle", { cx: xs(e), cy: ys(kWorst / n), r: 5, fill: COLORS.pos });
    svg(root, "circle", { cx: xs(e), cy: ys(kNoise / n), r: 5, fill: COLORS.neg });
  }

  function pLabel(z) { return "p(" + names[1] + ") = " + prob4(sigmoid(z)); }

  function update() {
    const e = Number(eps.value);
    $("f2-eps-out").textContent = e.toFixed(2);
    $("f2-eps-2").textContent = e.toFixed(2);
    const kWorst = errors(e, worst), kNoise = errors(e, random);
    $("f2-error").textContent = kWorst + " / " + n + " misclassified (" + percent(kWorst, n) + ")";
    $("f2-error").dataset.wrong = kWorst;
    $("f2-noise-error").textContent = kNoise + " / " + n + " (" + percent(kNoise, n) + ")";
    drawCurve(e, kWorst, kNoise);
    const j = current, y = labels[j];
    $("f2-which").textContent = "test image " + (j + 1) + " of " + n + ": a " + names[y];
    const views = [["clean", 0, worst], ["adv", e, worst], ["noise", e, random]];
    for (const [id, ee, dir] of views) {
      drawGray($("f2-" + id), perturbed(j, ee, dir));
      const z = logit(j, ee, dir);
      const cell = $("f2-p-" + id);
      cell.textContent = pLabel(z) + " \u2192 " + names[z > 0 ? 1 : 0];
      cell.style.color = wrong(j, z) ? COLORS.pos : COLORS.good;
    }
    const atRef = errors(F.eps, worst);
    $("f2-check").textContent = "At \u03b5 = " + F.eps + " this page finds " + atRef + " / " + n + "; FGSM in Python (advlab, the same model) misclassifies " + F.fgsm_wrong + " / " + n + ".";
    $("f2-check").classList.toggle("ok", atRef === F.fgsm_wrong);
  }

  $("f2-c0").textContent = names[0];
  $("f2-c1").textContent = names[1];
  for (const el of document.querySelectorAll(".lbl0")) el.textContent = names[0];
  for (const el of document.querySelectorAll(".lbl1")) el.textContent = names[1];
  $("f2-n").textContent = n;
  $("f2-source").textContent = "Data: " + F.source + ". Test images of the two classes: " + n + ".";
  // colour scale: the 99th percentile of |w|, so a few extreme weights do not wash out the rest
  const sorted = Array.from(w, Math.abs).sort((p, q) => p - q);
  drawDiverging($("f2-w"), w, sorted[Math.floor(0.99 * (D - 1))]);
  drawDiverging($("f2-sign"), sw, 1);
  eps.addEventListener("input", update);
  const pick = (j) => { current = (j + n) % n; update(); };
  $("f2-prev").addEventListener("click", () => pick(current - 1));
  $("f2-next").addEventListener("click", () => pick(current + 1));
  const draws = rng(7);
  $("f2-rand").addEventListener("click", () => pick(Math.floor(draws() * n)));
  update();
})();
