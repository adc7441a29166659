"""FAB and FAB-T: the fast adaptive boundary attack, untargeted and targeted (Croce & Hein 2019, "Minimally distorted
adversarial examples with a fast adaptive boundary attack", Sec. 3; targeted as in AutoAttack).

For a target t, linearise the decision boundary between the true class y and t at the iterate x^k:

    f(x) = z_t(x) - z_y(x) ≈ f(x^k) + <g, x - x^k>,   g = grad f(x^k),

and project both x^k and the original x onto the hyperplane {f = 0} within the box, in the
attack's norm (`projection_linf`, `projection_l2`: minimal-norm point of a hyperplane inside
[0, 1]^n: L-inf by a bisection on the radius, L2 by sorting the breakpoints). The step is the biased
combination (Sec. 3.2, eq. 9)

    x^{k+1} = clip((1 - a)(x^k + eta d_k) + a (x + eta d_0)),   a = min(|d_k| / (|d_k| + |d_0|), alpha_max),

and whenever x^{k+1} is adversarial it is recorded if closer than the best so far and pulled back
towards x: x^{k+1} <- x + beta (x^{k+1} - x) (Sec. 3.3). FAB minimises the distance; as a
fixed-budget attack an example counts as broken only when its closest adversarial point is within
eps. FAB (untargeted) takes as t, at every step, the class whose linearised boundary is nearest,
|f_t| / ||grad f_t||_* (Croce & Hein 2019, Sec. 3.1). FAB-T's targets are the `targets` most likely other classes at x (or the first of MALT's ranking,
`target_ranking="malt"`, see `advlab.attacks.targeting`), one run each on the points still
unbroken; restarts after the first start from a random point at radius eps / 2 (seeded per
example). Each example leaves a run once its best point is within eps (early exit).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import FixedBudgetAttack, Perturbed
from advlab.attacks.randomness import counter_uniform
from advlab.attacks.targeting import check_ranking, rank_targets
from advlab.validation import Bounds, check_count, check_positive


def projection_linf(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row: the L-inf-smallest d with <w, t + d> = b and t + d in [0, 1]^n (as far as the box allows).

    Orient w so that <w, t> >= b; coordinate i then moves by at most its room r_i (to 0 where
    w_i > 0, to 1 where w_i < 0), and moving every coordinate by min(lam, r_i) changes <w, t> by
    F(lam) = -sum_i |w_i| min(lam, r_i), decreasing, convex and piecewise linear. The smallest
    lam with F(lam) = b - <w, t> is the L-inf distance: a few bisection steps bracket it, then
    Newton steps from below (each exact on the linear piece it starts on; they never overshoot
    as F is convex) reach it once no breakpoint r_i is left between the iterate and the root.
    Without a solution (the box stops the move) every coordinate moves by its full room. The
    reference code sorts the breakpoints instead (same result up to rounding; this is 2-3x
    faster on MNIST-sized rows).
    """
    wt = (w * t).sum(1)
    sign = torch.where(wt >= b, 1.0, -1.0).to(t.dtype)
    w = w * sign.unsqueeze(1)
    need = (wt - b) * sign  # >= 0: how much <w, t + d> must drop
    down = torch.sign(w)  # 1: moves down to 0, -1: up to 1, 0: stays (floats: image-sized boolean ops are slow on the CPU)
    room = down.clamp_min(0) * t + (-down).clamp_min(0) * (1 - t)  # exactly t, 1 - t or 0
    weight = w.abs()
    lo, hi = torch.zeros_like(need), room.amax(1)
    for _ in range(_BISECTIONS):  # keep lo below the root: F(lo) > -need
        mid = (lo + hi) / 2
        short = torch.linalg.vecdot(weight, torch.minimum(room, mid.unsqueeze(1))) < need
        lo, hi = torch.where(short, mid, lo), torch.where(short, hi, mid)
    lam = lo
    weighted_room = weight * room
    saturated = (room <= lam.unsqueeze(1)).to(t.dtype)
    count = saturated.sum(1)
    for _ in range(room.shape[1] + 1):  # each step passes at least one breakpoint or ends
        slope = torch.linalg.vecdot(weight, 1 - saturated).clamp_min(torch.finfo(t.dtype).tiny)
        lam = torch.maximum(lam, (need - torch.linalg.vecdot(weighted_room, saturated)) / slope)
        saturated = (room <= lam.unsqueeze(1)).to(t.dtype)
        passed = saturated.sum(1)
        if bool((passed == count).all()):  # no breakpoint passed: lam is the root of its linear piece
            break
        count = passed
    reachable = torch.linalg.vecdot(weight, room) >= need
    step = torch.minimum(room, torch.where(reachable, lam, math.inf).unsqueeze(1))
    return -down * step


_BISECTIONS = 10  # narrow the bracket to 1/1024 of the largest room before the Newton steps


def projection_l2(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row: the L2-smallest d with <w, t + d> = b and t + d in [0, 1]^n (as far as the box allows)."""
    w = w.clone()
    c = (w * t).sum(1) - b
    sign = 2 * (c >= 0).to(t.dtype) - 1
    w.mul_(sign.unsqueeze(1))
    c = c * sign
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r.masked_fill_(w.abs() < 1e-8, 1e12)
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1)
    rs2 = torch.nn.functional.pad(rs[:, 1:], (0, 1))
    rs.masked_fill_(rs == 1e12, 0)
    rs2.masked_fill_(rs2 == 1e12, 0)
    w3s = (w**2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).to(t.dtype))
    s = torch.cat((-w5 * rs[:, 0:1], torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0:1]), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~(c4 | c3)
    lb = torch.zeros(int(c2.sum()), device=t.device, dtype=t.dtype)
    ub = torch.full_like(lb, w.shape[1] - 1)
    s_, c_ = s[c2], c[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        mid = torch.floor((lb + ub) / 2)
        up = s_.gather(1, mid.long().unsqueeze(1)).squeeze(1) + c_ > 0
        lb = torch.where(up, mid, lb)
        ub = torch.where(up, ub, mid)
    lb = lb.long()
    if bool(c4.any()):
        alpha = c[c4] / w5[c4].squeeze(-1)
        d[c4] = -alpha.unsqueeze(-1) * w[c4]
    if bool(c2.any()):
        alpha = (s[c2, lb] + c[c2]) / ws[c2, lb] + rs[c2, lb]
        alpha[ws[c2, lb] == 0] = 0
        c5 = (alpha.unsqueeze(-1) > r[c2]).to(t.dtype)
        d[c2] = d[c2] * c5 - alpha.unsqueeze(-1) * w[c2] * (1 - c5)
    return d * (w.abs() > 1e-8).to(t.dtype)


PROJECTIONS = {"linf": projection_linf, "l2": projection_l2}


class FABBase(FixedBudgetAttack):
    """What FAB and FAB-T share: the run from one start towards the boundary of a target class
    (FAB-T) or of the nearest class at each step (FAB); broken = an adversarial point within eps."""

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, bounds=bounds, **kwargs)
        self.steps = check_count("steps", steps)
        self.restarts = check_count("restarts", restarts)
        self.alpha_max, self.eta, self.beta = (check_positive(k, v) for k, v in (("alpha_max", alpha_max), ("eta", eta), ("beta", beta)))

    def _ranked(self, x: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor | None:
        """(N, K) target classes, one pass each; None: one pass towards the nearest boundary at each step."""
        return None

    def _perturb(self, x: torch.Tensor, goal: torch.Tensor, targeted: bool, indices: torch.Tensor) -> Perturbed:
        index = indices.to(x.device)
        with torch.no_grad():
            clean_logits = self.logits(x)
        out = x.clone()
        # a caller's target: one pass towards it, away from the clean prediction
        y = clean_logits.argmax(1) if targeted else goal
        open_ = (y != goal) if targeted else (clean_logits.argmax(1) == goal)
        if self.eps == 0:
            return Perturbed(out, clean_logits=clean_logits)
        ranked = None if targeted else self._ranked(x, clean_logits)
        for rank in [None] if ranked is None else range(ranked.shape[1]):
            for restart in range(self.restarts):
                todo = open_.nonzero().squeeze(1)
                if todo.numel() == 0:
                    return Perturbed(out, clean_logits=clean_logits)
                target = goal[todo] if targeted else None if ranked is None else ranked[todo, rank]
                found, size = self.run(x[todo], y[todo], target, index[todo], restart, reach=targeted)
                hit = size <= self.eps
                out[todo[hit]] = found[hit]
                open_[todo[hit]] = False
        return Perturbed(out, clean_logits=clean_logits)

    def run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, index: torch.Tensor, restart: int,
            reach: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run in the unit box: (closest adversarial point, its distance; inf if none).
        target None: towards the nearest linearised boundary at each step (untargeted FAB)."""
        lo, width = self.bounds[0], self.bounds[1] - self.bounds[0]
        x0 = ((x - lo) / width).flatten(1)
        n = x0.shape[0]
        x1 = x0.clone()
        if restart:
            u = counter_uniform(self.seed, index, restart, 2 * x0.shape[1]).to(x.dtype)
            x1 = self.geometry.start(x0, self.geometry.noise(u[:, ::2], u[:, 1::2]), 0.5 * self.eps / width, (0.0, 1.0))
        best = x0.clone()
        best_size = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
        active = torch.arange(n, device=x.device)
        project = PROJECTIONS[self.norm]
        x0a, ya, ta = x0, y, target  # the rows still running (compacted when some stop)
        for _ in range(self.steps):
            f, g = self._boundary(x1, ya, ta, x.shape, lo, width)
            b = -f + (g * x1).sum(1)
            d = project(torch.cat((x1, x0a)), torch.cat((g, g)), torch.cat((b, b)))
            size = self.geometry.distance(d).clamp_min(1e-8)
            d1, d0, a1, a0 = d[: len(active)], d[len(active) :], size[: len(active)], size[len(active) :]
            alpha = (a1 / (a1 + a0)).clamp(0, self.alpha_max).unsqueeze(1)
            x1 = ((x1 + self.eta * d1) * (1 - alpha) + (x0a + self.eta * d0) * alpha).clamp(0, 1)
            with torch.no_grad():
                pred = self.logits(self._image(x1, x.shape, lo, width)).argmax(1)
                adversarial = pred == ta if reach else pred != ya
            dist = self.geometry.distance(x1 - x0a) * width
            closer = adversarial & (dist < best_size[active])
            best[active[closer]] = x1[closer]
            best_size[active[closer]] = dist[closer]
            x1 = torch.where(adversarial.unsqueeze(1), x0a + self.beta * (x1 - x0a), x1)
            keep = best_size[active] > self.eps  # early exit: within eps, the run has done its job
            if not bool(keep.all()):
                active, x1, x0a, ya = active[keep], x1[keep], x0a[keep], ya[keep]
                ta = None if ta is None else ta[keep]
                if active.numel() == 0:
                    break
        return self._image(best, x.shape, lo, width), best_size

    @staticmethod
    def _image(u: torch.Tensor, shape: torch.Size, lo: float, width: float) -> torch.Tensor:
        return (u if (lo, width) == (0.0, 1.0) else lo + width * u).view(-1, *shape[1:])

    def _boundary(self, u: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, shape: torch.Size, lo: float,
                  width: float) -> tuple[torch.Tensor, torch.Tensor]:
        """f = z_t - z_y at the unit-box point u and its gradient with respect to u; without a
        target, t is the class of nearest linearised boundary |f_t| / ||grad f_t||_* (one
        backward pass per class; Croce & Hein 2019, Sec. 3.1)."""
        u = u.detach().requires_grad_(True)
        with torch.enable_grad():
            z = self.logits(self._image(u, shape, lo, width))
            z_y = z.gather(1, y[:, None]).squeeze(1)
            if target is not None:
                f = z.gather(1, target[:, None]).squeeze(1) - z_y
                (grad,) = torch.autograd.grad(f.sum(), u)
                return f.detach(), grad
            best_f, best_grad = torch.zeros_like(z_y), torch.zeros_like(u)
            best = torch.full_like(z_y, math.inf)
            for j in range(z.shape[1]):
                f = z[:, j] - z_y
                (grad,) = torch.autograd.grad(f.sum(), u, retain_graph=j + 1 < z.shape[1])
                score = torch.where(y == j, math.inf, f.detach().abs() / (self.geometry.dual(grad) + 1e-12))
                closer = score < best
                best = torch.where(closer, score, best)
                best_f = torch.where(closer, f.detach(), best_f)
                best_grad = torch.where(closer.unsqueeze(1), grad, best_grad)
        return best_f, best_grad


class FABT(FABBase):
    """Targeted FAB under L-inf or L2, once per target among the first `targets` of
    `target_ranking`; broken = an adversarial point within eps was found."""

    name = "fab-t"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float,
        norm: str = "linf",
        steps: int = 100,
        targets: int = 9,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        target_ranking: str = "confidence",
        bounds: Bounds = (0.0, 1.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, steps=steps, restarts=restarts, alpha_max=alpha_max, eta=eta, beta=beta,
                         bounds=bounds, **kwargs)
        self.targets = check_count("targets", targets)
        self.target_ranking = check_ranking(target_ranking)

    def _ranked(self, x: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor | None:
        return rank_targets(self, x, min(self.targets, clean_logits.shape[1] - 1), self.target_ranking, clean_logits)


class FAB(FABBase):
    """Untargeted FAB (Croce & Hein 2019): each step linearises the boundary of the nearest class;
    `restarts` runs (AutoAttack's `plus` version uses 5); broken = an adversarial point within eps."""

    name = "fab"
