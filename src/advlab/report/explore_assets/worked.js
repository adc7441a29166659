// Panel 1: the worked example. x' = x + eps * d * s with s = sign(w) (or random signs) and d the
// direction toward the other class (+1 when w.x + b <= 0); the score moves by eps * d * sum_i w_i s_i.
// Inputs are finite numbers in [-LIMIT, LIMIT]; any other entry is refused with a message and the
// last accepted value stays in use, so every drawn number is finite.
(function worked() {
  const LIMIT = 1000;
  const state = { x: DATA.worked.x.slice(), w: DATA.worked.w.slice(), b: DATA.worked.b, signs: null, draws: 0 };
  const refused = new Map();  // input id -> why its entry was refused
  const draw = rng(12345);
  const eps = $("we-eps");

  const SUB = "\u2080\u2081\u2082\u2083\u2084\u2085\u2086\u2087\u2088\u2089";
  function dot(a, b) { return a.reduce((s, v, i) => s + v * b[i], 0); }

  function model() {
    const z0 = dot(state.w, state.x) + state.b;
    const d = z0 > 0 ? -1 : 1;
    const signs = state.signs || state.w.map(Math.sign);
    const e = Number(eps.value);
    const eta = signs.map((s) => e * d * s);
    const terms = state.w.map((wi, i) => wi * eta[i]);
    const l1 = state.w.reduce((s, v) => s + Math.abs(v), 0);
    const l2 = Math.sqrt(dot(state.w, state.w));
    return { z0, d, signs, e, eta, terms, l1, l2, z: z0 + terms.reduce((s, v) => s + v, 0) };
  }

  function buildTable() {
    const table = $("we-table");
    clear(table);
    const head = table.insertRow();
    head.appendChild(document.createElement("th"));
    for (let i = 0; i < state.x.length; i++) head.appendChild(Object.assign(document.createElement("th"), { textContent: "i = " + (i + 1) }));
    head.appendChild(Object.assign(document.createElement("th"), { textContent: "sum" }));
    for (const [key, label] of [["x", "x"], ["w", "w"]]) {
      const row = table.insertRow();
      row.appendChild(Object.assign(document.createElement("th"), { textContent: label }));
      state[key].forEach((v, i) => {
        const input = Object.assign(document.createElement("input"), { type: "number", step: "0.1", value: v, min: -LIMIT, max: LIMIT });
        input.id = "we-" + key + i;
        input.setAttribute("aria-label", label + SUB[i + 1]);
        input.addEventListener("input", () => accept(input, label + SUB[i + 1], () => state[key][i], (n) => { state[key][i] = n; }));
        row.insertCell().appendChild(input);
      });
      row.insertCell();
    }
    for (const key of ["sign", "eta", "xp", "term"]) {
      const row = table.insertRow();
      row.id = "we-row-" + key;
      row.appendChild(document.createElement("th"));
      for (let i = 0; i <= state.x.length; i++) row.insertCell();
    }
    $("we-b").value = state.b;
    Object.assign($("we-b"), { min: -LIMIT, max: LIMIT });
  }

  // Take a typed number if it is finite and within [-LIMIT, LIMIT]; otherwise keep the last
  // accepted value, mark the field and say why.
  function accept(input, name, current, store) {
    const text = input.value.trim(), n = Number(text);
    const ok = text !== "" && Number.isFinite(n) && Math.abs(n) <= LIMIT;
    input.classList.toggle("invalid", !ok);
    input.setAttribute("aria-invalid", String(!ok));
    if (ok) { refused.delete(input.id); store(n); } else {
      const entry = text === "" ? "is empty or not a number" : "= " + text + " is outside [\u2212" + LIMIT + ", " + LIMIT + "]";
      refused.set(input.id, name + " " + entry + ": enter a number from \u2212" + LIMIT + " to " + LIMIT + "; the page keeps " + name + " = " + current() + ".");
    }
    update();
  }

  function showMessages(m) {
    const lines = Array.from(refused.values());
    if (m.l1 === 0) lines.push("All weights are 0: the score w\u00b7x + b = b does not depend on x, so no perturbation changes the prediction and there is no flip point. Give some w\u1d62 a non-zero value.");
    const box = $("we-message");
    box.hidden = lines.length === 0;
    clear(box);
    for (const line of lines) box.appendChild(Object.assign(document.createElement("div"), { textContent: line }));
  }

  function fillTable(m) {
    const rows = {
      sign: [state.signs ? "random sign" : "sign(w)", m.signs.map((s) => signed(s, 0)), ""],
      eta: ["\u03b7", m.eta.map((v) => signed(v, 2)), ""],
      xp: ["x\u2032 = x + \u03b7", state.x.map((v, i) => fixed(v + m.eta[i], 2)), ""],
      term: ["w\u00b7\u03b7", m.terms.map((v) => signed(v, 2)), signed(m.z - m.z0, 2)],
    };
    for (const [key, [label, cells, total]] of Object.entries(rows)) {
      const row = $("we-row-" + key);
      row.cells[0].textContent = label;
      cells.forEach((v, i) => { row.cells[i + 1].textContent = v; });
      row.cells[cells.length + 1].textContent = total;
    }
  }

  function drawBars(m) {
    const root = $("we-bars");
    clear(root);
    const W = 460, H = 210, left = 44, right = 10, top = 14, bottom = 30;
    // a scale that steps up only when a bar outgrows it, so growth stays visible
    const need = Math.max(...m.terms.map(Math.abs), Math.abs(m.z - m.z0), state.signs ? m.e * m.l1 : 0) * 1.15;
    const lim = [2, 4, 8, 12, 16, 24, 32, 64, 128].find((v) => v >= need) || need;
    const y = scale(-lim, lim, H - bottom, top);
    const n = m.terms.length + 1, band = (W - left - right) / n;
    for (const t of ticks(-lim, lim, 6)) {
      svg(root, "line", { x1: left, x2: W - right, y1: y(t), y2: y(t), stroke: t === 0 ? COLORS.muted : COLORS.grid });
      svg(root, "text", { x: left - 6, y: y(t) + 4, "text-anchor": "end" }, tickLabel(t));
    }
    const values = m.terms.concat([m.z - m.z0]);
    values.forEach((v, i) => {
      const total = i === n - 1;
      const fill = total ? COLORS.accent : (v >= 0 ? COLORS.pos : COLORS.neg);
      const x0 = left + i * band + band * 0.18;
      svg(root, "rect", { x: x0, width: band * 0.64, y: Math.min(y(0), y(v)), height: Math.abs(y(v) - y(0)), fill, rx: 2 });
      svg(root, "text", { x: x0 + band * 0.32, y: v >= 0 ? y(v) - 4 : y(v) + 12, "text-anchor": "middle", class: "label" }, signed(v, 2));
      svg(root, "text", { x: x0 + band * 0.32, y: H - 10, "text-anchor": "middle" }, total ? (state.signs ? "sum" : "sum = \u03b5\u2016w\u2016\u2081") : "w" + SUB[i + 1] + "\u03b7" + SUB[i + 1]);
    });
    if (state.signs) {  // the sign(w) total for comparison
      const best = m.e * m.l1 * m.d;
      svg(root, "line", { x1: left + (n - 1) * band + 4, x2: W - right, y1: y(best), y2: y(best), stroke: COLORS.ink, "stroke-dasharray": "4 3" });
      svg(root, "text", { x: W - right, y: y(best) + (best >= 0 ? -4 : 12), "text-anchor": "end" }, "sign(w): " + signed(best, 2));
    }
  }

  function drawSigmoid(m) {
    const root = $("we-sigmoid");
    clear(root);
    const W = 460, H = 230, left = 40, right = 12, top = 12, bottom = 62;
    const reach = Number(eps.max) * m.l1;
    const lo = Math.min(-8, m.z0 - 2, m.d < 0 ? m.z0 - reach : -8), hi = Math.max(8, m.z0 + 2, m.d > 0 ? m.z0 + reach : 8);
    const x = scale(lo, hi, left, W - right), y = scale(0, 1, H - bottom, top);
    for (const t of [0, 0.5, 1]) {
      svg(root, "line", { x1: left, x2: W - right, y1: y(t), y2: y(t), stroke: COLORS.grid });
      svg(root, "text", { x: left - 6, y: y(t) + 4, "text-anchor": "end" }, String(t));
    }
    let path = "";
    for (let k = 0; k <= 200; k++) { const z = lo + (hi - lo) * k / 200; path += (k ? "L" : "M") + x(z).toFixed(1) + " " + y(sigmoid(z)).toFixed(1); }
    svg(root, "path", { d: path, fill: "none", stroke: COLORS.ink, "stroke-width": 2 });
    // z axis, and the eps axis under it: on the sign(w) path z = z0 + d * eps * ||w||_1
    const axis1 = H - bottom + 4, axis2 = H - bottom + 34;
    svg(root, "line", { x1: left, x2: W - right, y1: axis1, y2: axis1, stroke: COLORS.muted });
    for (const t of ticks(lo, hi, 8)) {
      svg(root, "line", { x1: x(t), x2: x(t), y1: axis1, y2: axis1 + 4, stroke: COLORS.muted });
      svg(root, "text", { x: x(t), y: axis1 + 15, "text-anchor": "middle" }, tickLabel(t));
    }
    svg(root, "text", { x: W - right, y: axis1 - 4, "text-anchor": "end" }, "score z = w\u00b7x + b");
    const epsAt = (e) => m.z0 + m.d * e * m.l1;
    svg(root, "line", { x1: x(0), x2: x(0), y1: top, y2: axis2, stroke: COLORS.accent, "stroke-dasharray": "4 3" });
    if (m.l1 === 0) {  // no eps moves the score: no eps axis, no flip point
      svg(root, "text", { x: left, y: axis2 + 4, fill: COLORS.accent }, "\u03b5 does not move the score: all weights are 0");
    } else {
      svg(root, "line", { x1: x(epsAt(0)), x2: x(epsAt(Number(eps.max))), y1: axis2, y2: axis2, stroke: COLORS.accent });
      let last = -Infinity;  // a tiny ||w||_1 packs the eps ticks together: label only those 28 px apart
      for (const t of ticks(0, Number(eps.max), 6)) {
        const px = x(epsAt(t));
        if (px < left - 1 || px > W - right + 1 || Math.abs(px - last) < 28) continue;
        last = px;
        svg(root, "line", { x1: px, x2: px, y1: axis2, y2: axis2 + 4, stroke: COLORS.accent });
        svg(root, "text", { x: px, y: axis2 + 15, "text-anchor": "middle" }, String(t));
      }
      svg(root, "text", { x: x(epsAt(0)) + (m.d > 0 ? -6 : 6), y: axis2 + 4, "text-anchor": m.d > 0 ? "end" : "start", fill: COLORS.accent }, "\u03b5 with sign(w):");
      const flip = Math.abs(m.z0) / m.l1;
      const rightHalf = x(0) > (left + W - right) / 2;
      svg(root, "text", { x: x(0) + (rightHalf ? -6 : 6), y: y(0.85), class: "label", "text-anchor": rightHalf ? "end" : "start" }, "flip point \u03b5* = " + fixed(flip, 4));
    }
    svg(root, "circle", { cx: x(m.z0), cy: y(sigmoid(m.z0)), r: 5, fill: "#fff", stroke: COLORS.ink, "stroke-width": 2 });
    const clamp = (z) => Math.max(lo, Math.min(hi, z));
    if (state.signs) {  // where sign(w) would have put x', for contrast
      const zs = clamp(epsAt(m.e));
      svg(root, "circle", { cx: x(zs), cy: y(sigmoid(zs)), r: 6, fill: "none", stroke: COLORS.accent, "stroke-width": 2 });
      svg(root, "text", { x: x(zs) - 9, y: y(sigmoid(zs)) + 4, "text-anchor": "end", fill: COLORS.accent }, "sign(w)");
    }
    const zc = clamp(m.z);
    svg(root, "circle", { cx: x(zc), cy: y(sigmoid(zc)), r: 6, fill: state.signs ? COLORS.neg : COLORS.accent });
    svg(root, "text", { x: x(zc) + 9, y: y(sigmoid(zc)) + 4, class: "label" }, state.signs ? "x\u2032 (random signs)" : "x\u2032");
    svg(root, "text", { x: x(m.z0), y: y(sigmoid(m.z0)) - 10, "text-anchor": "middle" }, "x");
  }

  function update() {
    const m = model();
    $("we-eps-out").textContent = m.e.toFixed(2);
    fillTable(m);
    drawBars(m);
    drawSigmoid(m);
    $("we-z0").textContent = fixed(m.z0, 4);
    $("we-p0").textContent = prob4(sigmoid(m.z0));
    $("we-z").textContent = fixed(m.z, 4);
    $("we-p").textContent = prob4(sigmoid(m.z));
    $("we-flip").textContent = m.l1 === 0 ? "none (\u2016w\u2016\u2081 = 0: no \u03b5 moves the score)"
      : fixed(Math.abs(m.z0), 4) + " / " + fixed(m.l1, 4) + " = " + fixed(Math.abs(m.z0) / m.l1, 4);
    showMessages(m);
    const toward = m.d > 0 ? "" : "\u2212";
    $("we-mode").textContent = state.signs ? "random signs, draw " + state.draws : "\u03b7 = " + toward + "\u03b5\u00b7sign(w)";
    $("we-contrast").hidden = !state.signs;
    $("we-contrast").textContent = "random signs moved the score by " + signed(m.z - m.z0, 2) + "; " + toward
      + "\u03b5\u00b7sign(w) moves it by " + signed(m.d * m.e * m.l1, 2) + " (\u03b5\u2016w\u2016\u2081). Over many draws the random move has mean 0 and standard deviation \u03b5\u2016w\u2016\u2082 = "
      + fixed(m.e * m.l2, 2) + ".";
  }

  eps.addEventListener("input", update);
  $("we-b").addEventListener("input", () => accept($("we-b"), "b", () => state.b, (n) => { state.b = n; }));
  $("we-random").addEventListener("click", () => {
    state.signs = state.w.map(() => (draw() < 0.5 ? -1 : 1));
    state.draws += 1;
    $("we-sign").disabled = false;
    update();
  });
  $("we-sign").addEventListener("click", () => { state.signs = null; $("we-sign").disabled = true; update(); });
  $("we-reset").addEventListener("click", () => {
    Object.assign(state, { x: DATA.worked.x.slice(), w: DATA.worked.w.slice(), b: DATA.worked.b, signs: null });
    refused.clear();
    $("we-b").classList.remove("invalid");
    $("we-b").setAttribute("aria-invalid", "false");
    $("we-sign").disabled = true;
    eps.value = 0.3;
    buildTable();
    update();
  });
  buildTable();
  update();
})();
