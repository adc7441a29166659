// Panel 3: Szegedy et al. 2013, Sec. 4.1: the search over c of the targeted L-BFGS attack, per digit,
// with the smallest perturbation it found beside the exact minimal L2 perturbation.
(function szegedy() {
  const names = DATA.fig2.classes.map(String);
  const root = $("sz-cards");

  function el(tag, attrs, text) {
    const node = Object.assign(document.createElement(tag), attrs || {});
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function figure(parent, caption, draw) {
    const fig = el("figure");
    const canvas = el("canvas", { width: 96, height: 96 });
    draw(canvas);
    fig.append(canvas, el("figcaption", {}, caption));
    parent.appendChild(fig);
  }

  function plot(container, t) {
    const W = 420, H = 200, left = 46, right = 12, top = 26, bottom = 40;
    const root = svg(container, "svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "distance against c" });
    const cs = t.steps.map((s) => Math.log10(s.c));
    const lo = Math.floor(Math.min(...cs)) - 0.3, hi = Math.ceil(Math.max(...cs)) + 0.3;
    const found = t.steps.filter((s) => s.success).map((s) => s.distance);
    const top_d = Math.max(t.exact.distance, ...found) * 1.25;
    const x = scale(lo, hi, left, W - right), y = scale(0, top_d, H - bottom, top);
    for (const v of ticks(0, top_d, 4)) {
      svg(root, "line", { x1: left, x2: W - right, y1: y(v), y2: y(v), stroke: COLORS.grid });
      svg(root, "text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, String(Math.round(v * 100) / 100));
    }
    for (let k = Math.ceil(lo); k <= hi; k++) svg(root, "text", { x: x(k), y: H - bottom + 14, "text-anchor": "middle" }, "1e" + k);
    svg(root, "text", { x: (left + W - right) / 2, y: H - 6, "text-anchor": "middle" }, "c (log scale): larger c punishes \u2016r\u2016 more");
    svg(root, "text", { x: left + 4, y: top - 2, class: "label" }, "\u2016r\u2016\u2082 of the minimiser");
    svg(root, "line", { x1: left, x2: W - right, y1: y(t.exact.distance), y2: y(t.exact.distance), stroke: COLORS.good, "stroke-dasharray": "5 4" });
    svg(root, "text", { x: W - right, y: y(t.exact.distance) + 14, fill: COLORS.good, "text-anchor": "end" }, "exact minimum " + fixed(t.exact.distance, 4));
    const best = t.steps.reduce((k, s, i) => (s.success && (k < 0 || s.distance < t.steps[k].distance) ? i : k), -1);
    t.steps.forEach((s, k) => {
      const cx = x(Math.log10(s.c)), cy = s.success ? y(s.distance) : H - bottom - 6;
      if (s.success) svg(root, "circle", { cx, cy, r: k === best ? 6 : 4, fill: k === best ? COLORS.good : COLORS.accent });
      else svg(root, "text", { x: cx, y: cy + 4, "text-anchor": "middle", fill: COLORS.pos, "font-size": 14, "font-weight": 700 }, "\u00d7");
      if (k < 4) svg(root, "text", { x: cx + 6, y: cy - 6, fill: COLORS.ink }, String(k + 1));
    });
  }

  function table(container, t) {
    const details = el("details");
    details.appendChild(el("summary", {}, "every c tried (" + t.steps.length + " solves)"));
    const tab = el("table");
    const head = tab.insertRow();
    for (const h of ["step", "c", "reaches " + names[t.target] + "?", "\u2016r\u2016\u2082"]) head.appendChild(el("th", {}, h));
    t.steps.forEach((s, k) => {
      const row = tab.insertRow();
      row.insertCell().textContent = k + 1;
      row.insertCell().textContent = s.c.toPrecision(4);
      const ok = row.insertCell();
      ok.textContent = s.success ? "yes" : "no";
      ok.className = s.success ? "yes" : "no";
      row.insertCell().textContent = s.success ? fixed(s.distance, 4) : "\u2014 (not adversarial)";
    });
    details.appendChild(tab);
    container.appendChild(details);
  }

  for (const t of DATA.szegedy) {
    const card = el("div", { className: "card" });
    const imgs = el("div", { className: "imgs" });
    imgs.appendChild(el("h4", {}, "test image " + (t.index + 1) + ": a " + names[t.label] + " \u2192 target " + names[t.target]));
    const image = Array.from(decode(t.image, Uint8Array), (v) => v / 255);
    const rL = decode(t.lbfgs.r, Float32Array), rE = decode(t.exact.r, Float32Array);
    const m = Math.max(maxAbs(rL), maxAbs(rE));
    const row = el("div", { className: "figrow" });
    figure(row, "x", (c) => drawGray(c, image));
    figure(row, "x + r \u2192 " + names[t.target], (c) => drawGray(c, image.map((v, i) => v + rL[i])));
    figure(row, "r, L-BFGS \u00d7" + (1 / m).toFixed(1), (c) => drawDiverging(c, rL, m));
    figure(row, "r, exact \u00d7" + (1 / m).toFixed(1), (c) => drawDiverging(c, rE, m));
    imgs.appendChild(row);
    const ratio = t.lbfgs.distance / t.exact.distance;
    imgs.appendChild(el("p", {}, "\u2016r\u2016\u2082: L-BFGS " + fixed(t.lbfgs.distance, 4) + ", exact " + fixed(t.exact.distance, 4) + " (ratio " + ratio.toFixed(4) + ")"));
    const right = el("div", { className: "plot" });
    plot(right, t);
    right.appendChild(el("p", { className: "note" }, "\u00d7: the minimiser at that c is not adversarial (not a " + names[t.target] + "). Numbers mark the first four c tried (bracketing by factors of 10); the rest bisect. Green: the largest successful c, whose r is the smallest."));
    table(right, t);
    card.append(imgs, right);
    root.appendChild(card);
  }
})();
