"""Sound bounds on a ReluNetwork's values over an input box, batched over boxes.

Every function takes boxes [xl, xu] of shape (B, n) (the eps-ball around each input
intersected with the data bounds) and returns, per box, bounds that hold for every input in it:

- Interval arithmetic (IBP; Gowal et al. 2018): an affine map sends the box with centre c and
  radius r to centre A c, radius |W| r; ReLU and max-pool are monotone, so they map the bounds
  of their inputs directly.
- CROWN (Zhang et al. 2018, "Efficient neural network robustness certification with general
  activation functions", Sec. 3): to bound lam . z_j, substitute backwards through the network,
  replacing each non-linearity by a linear lower or upper bound (chosen by the sign of its
  coefficient) that holds over its input bounds:
    ReLU with l < 0 < u:  (u >= -l) z <= relu(z) <= u (z - l) / (u - l)  (adaptive lower slope);
    max over a window:    z_m <= max(z) <= g + a_t (z_t - l_t), m the input with the largest
                          lower bound, t the one with the largest upper bound U, g = max(l_m, U2)
                          (U2 the second-largest upper bound), a_t = (U - g) / (U - l_t): the
                          line of least volume, below DeepPoly's constant max_i u_i (Singh et al.
                          2019, Sec. 4); max(z) = z_m when l_m >= u_i for every other input i;
  until lam . z_j <= c + Lam x, maximised over the box in closed form. Hidden bounds are
  computed layer by layer and intersected with the interval ones.

All arithmetic is float64; every bound is widened by BOUND_SLACK relative to its size against
rounding. `margin_bounds` gives, per class k, a lower bound on z_y - z_k: the input is robust
on the whole box when it is positive for every k != y.
"""

from __future__ import annotations

import math

import torch

from advlab.errors import InputError
from advlab.exact.operators import MaxRelaxation, ReluRelaxation
from advlab.exact.relu_network import Affine, ReluNetwork

BOUND_SLACK = 1e-9  # relative widening of computed bounds, against float64 rounding
ELEMENTS = 1 << 21  # coefficient entries per back-substitution pass (memory budget; 16 MB keeps
# the buffers in the allocator's heap instead of fresh pages for every pass)
METHODS = ("interval", "crown")
Interval = tuple[torch.Tensor, torch.Tensor]


def _widen(lower: torch.Tensor, upper: torch.Tensor) -> Interval:
    slack = BOUND_SLACK * (1.0 + lower.abs() + upper.abs())
    return lower - slack, upper + slack


def _affine_interval(a: Affine, lower: torch.Tensor, upper: torch.Tensor) -> Interval:
    """Bounds of a(v) for v in [lower, upper]; an identity (no operator) passes them unchanged:
    no arithmetic, nothing to widen."""
    return (lower, upper) if not a.ops else _widen(*a.interval(lower, upper))


def interval_bounds(net: ReluNetwork, xl: torch.Tensor, xu: torch.Tensor) -> list[Interval]:
    """Bounds on z_0, ..., z_L (each (B, width)) by interval arithmetic."""
    out = [_affine_interval(net.affines[0], xl, xu)]
    for g, a in zip(net.nonlinear, net.affines[1:]):
        out.append(_affine_interval(a, *g.interval(*out[-1])))
    return out


def _back_substitute(
    net: ReluNetwork, relax: list, depth: int, lam: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor,
    *, both: bool = False,
) -> torch.Tensor:
    """Upper bound of lam . z_depth over the box, lam (B, R, width_depth) -> (B, R); `both`: of
    lam and of -lam ((B, 2R), the first step shared: the transpose of -lam is minus lam's). A
    disjoint max-pool fed by a ReLU through the identity is stepped through with the ReLU at once
    (`MaxRelaxation.back_through`); an identity adds nothing."""
    const, lam = lam @ net.affines[depth].bias, net.affines[depth].back(lam)
    if both:
        const, lam = torch.cat([const, -const], 1), torch.cat([lam, -lam], 1)
    i = depth  # lam is on z_i; g_i maps z_{i-1} to h_i
    while i > 0:
        g = relax[i - 1]
        if isinstance(g, MaxRelaxation) and g.disjoint and i >= 2 and not net.affines[i - 1].ops \
                and isinstance(relax[i - 2], ReluRelaxation):
            lam, extra = g.back_through(relax[i - 2], lam)
            i -= 1
        else:
            lam, extra = g.back(lam)
        const = const + extra
        if net.affines[i - 1].ops:
            const = const + lam @ net.affines[i - 1].bias
            lam = net.affines[i - 1].back(lam)
        i -= 1
    return const + (lam.clamp_min(0.0) * xu.unsqueeze(1)).sum(-1) + (lam.clamp_max(0.0) * xl.unsqueeze(1)).sum(-1)


def _chunk(net: ReluNetwork, depth: int, boxes: int, width: int) -> int:
    """Rows per back-substitution pass within ELEMENTS coefficient entries."""
    widest = max([width] + [a.widest for a in net.affines[: depth + 1]])
    return max(1, ELEMENTS // (boxes * widest))


def _upper_bounds(
    net: ReluNetwork, relax: list, depth: int, rows: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor
) -> torch.Tensor:
    """Upper bounds of rows . z_depth (rows (B, R, width_depth)) -> (B, R), in chunks of rows
    within ELEMENTS (unwidened)."""
    chunk = _chunk(net, depth, xl.shape[0], xl.shape[1])
    return torch.cat([_back_substitute(net, relax, depth, rows[:, start : start + chunk], xl, xu)
                      for start in range(0, rows.shape[1], chunk)], 1)


def _crown_neurons(
    net: ReluNetwork, relax: list, depth: int, index: torch.Tensor, valid: torch.Tensor, xl: torch.Tensor,
    xu: torch.Tensor,
) -> Interval:
    """Bounds of the neurons index (B, K) of z_depth (where valid (B, K); one-hot rows built a
    chunk at a time): both sides, each chunk's transposes shared by its two signs."""
    width = net.affines[depth].bias.shape[0]
    chunk = max(1, _chunk(net, depth, xl.shape[0], xl.shape[1]) // 2)
    uppers, lowers = [], []
    for start in range(0, index.shape[1], chunk):
        part, ok = index[:, start : start + chunk], valid[:, start : start + chunk]
        rows = one_hot_rows(part, ok, width, xl.dtype)
        both = _back_substitute(net, relax, depth, rows, xl, xu, both=True)
        uppers.append(both[:, : part.shape[1]])
        lowers.append(-both[:, part.shape[1] :])
    return _widen(torch.cat(lowers, 1), torch.cat(uppers, 1))


def relaxation_needs(net: ReluNetwork, depth: int, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """The neurons of z_depth (B, W) whose tighter bounds can change a relaxation: those its
    non-linearity needs and, where an identity passes its outputs to the next non-linearity (a
    ReLU before a max-pool), those whose output is not a single point and the next one needs."""
    g = net.nonlinear[depth]
    needs = g.needs_bounds(lower, upper)
    if depth + 1 < len(net.nonlinear) and not net.affines[depth + 1].ops:
        out_lower, out_upper = g.interval(lower, upper)
        needs = needs | (net.nonlinear[depth + 1].needs_bounds(out_lower, out_upper) & (out_upper > out_lower))
    return needs


def neuron_rows(needs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per box the neurons it needs (needs (B, W)) as indices (B, K), padded to the largest
    count K, and which entries are real (B, K)."""
    counts = needs.sum(1)
    most = int(counts.max()) if len(counts) else 0
    index = torch.argsort(needs.to(torch.int8), dim=1, descending=True, stable=True)[:, :most]
    return index, torch.arange(most) < counts.unsqueeze(1)


def one_hot_rows(index: torch.Tensor, valid: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows e_index (B, K, width), zero where not valid."""
    return torch.zeros(*index.shape, width, dtype=dtype).scatter_(2, index.unsqueeze(2), valid.unsqueeze(2).to(dtype))


def intersect_at(bounds: Interval, index: torch.Tensor, valid: torch.Tensor, new: Interval) -> Interval:
    """bounds (B, W) intersected with new (B, K) at the neurons index (B, K) where valid."""
    lower, upper = bounds
    old_lower, old_upper = lower.gather(1, index), upper.gather(1, index)
    lower = lower.scatter(1, index, torch.where(valid, torch.maximum(new[0], old_lower), old_lower))
    upper = upper.scatter(1, index, torch.where(valid, torch.minimum(new[1], old_upper), old_upper))
    return lower, upper


def _tighten(
    net: ReluNetwork, relax: list, depth: int, needs: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
    xl: torch.Tensor, xu: torch.Tensor,
) -> Interval:
    """The interval bounds of z_depth intersected with CROWN's where `needs` (B, W): each box
    bounds only its own neurons (one-hot rows, padded with zero rows to the largest count), so a
    box's bounds do not depend on the others in its batch."""
    index, valid = neuron_rows(needs)
    if index.shape[1] == 0:
        return lower, upper
    return intersect_at((lower, upper), index, valid, _crown_neurons(net, relax, depth, index, valid, xl, xu))


def hidden_bounds(net: ReluNetwork, xl: torch.Tensor, xu: torch.Tensor, *, method: str = "crown") -> list[Interval]:
    """Bounds on the inputs z_0, ..., z_{L-1} of the non-linearities over the boxes: interval
    arithmetic, or the tighter of it and CROWN, layer by layer."""
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "interval":
        return interval_bounds(net, xl, xu)[:-1]
    out = [_affine_interval(net.affines[0], xl, xu)]
    relax: list[ReluRelaxation | MaxRelaxation] = []
    for depth in range(1, len(net.nonlinear)):
        g = net.nonlinear[depth - 1]
        relax.append(g.relaxation(*out[-1]))
        lower, upper = _affine_interval(net.affines[depth], *g.interval(*out[-1]))
        if net.affines[depth].ops:  # through an identity, CROWN = interval
            lower, upper = _tighten(net, relax, depth, relaxation_needs(net, depth, lower, upper), lower, upper, xl, xu)
        out.append((lower, upper))
    return out


def spec_bounds(
    net: ReluNetwork, hidden: list[Interval], rows: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor,
    *, method: str = "crown",
) -> Interval:
    """Bounds of rows . z_L (rows (B, R, C)) given the hidden bounds from `hidden_bounds`."""
    depth = len(net.nonlinear)
    if method == "crown":
        relax = [g.relaxation(lo, up) for g, (lo, up) in zip(net.nonlinear, hidden)]
        chunk = max(1, _chunk(net, depth, xl.shape[0], xl.shape[1]) // 2)
        both = torch.cat([_back_substitute(net, relax, depth, rows[:, start : start + chunk], xl, xu, both=True)
                          .unflatten(1, (2, -1)) for start in range(0, rows.shape[1], chunk)], 2)
        return _widen(-both[:, 1], both[:, 0])
    lam, const = net.affines[depth].back(rows), rows @ net.affines[depth].bias
    lo, up = (xl, xu) if depth == 0 else net.nonlinear[-1].interval(*hidden[-1])
    centre, radius = (up + lo) / 2, (up - lo) / 2
    mid = const + (lam * centre.unsqueeze(1)).sum(-1)
    spread = (lam.abs() * radius.unsqueeze(1)).sum(-1)
    return _widen(mid - spread, mid + spread)


def spec_lower(
    net: ReluNetwork, hidden: list[Interval], rows: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor
) -> torch.Tensor:
    """CROWN lower bounds of rows . z_L (rows (B, R, C)) only: half the back-substitution of
    `spec_bounds` (as auto_LiRPA's `bound_upper=False`)."""
    relax = [g.relaxation(lo, up) for g, (lo, up) in zip(net.nonlinear, hidden)]
    lower = -_upper_bounds(net, relax, len(net.nonlinear), -rows, xl, xu)
    return _widen(lower, lower)[0]


def margin_rows(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per example the rows e_y - e_k over the logits, one per class k ((B, C, C); row y is 0)."""
    eye = torch.eye(num_classes, dtype=dtype)
    return eye[labels].unsqueeze(1) - eye.unsqueeze(0)


def rival_rows(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example the classes k != y in class order (B, C-1) and their rows e_y - e_k (B, C-1, C)."""
    others = torch.arange(num_classes).expand(len(labels), -1)
    others = others[others != labels.unsqueeze(1)].reshape(len(labels), num_classes - 1)
    return others, margin_rows(labels, num_classes).gather(1, others.unsqueeze(-1).expand(-1, -1, num_classes))


def margin_bounds(
    net: ReluNetwork, xl: torch.Tensor, xu: torch.Tensor, labels: torch.Tensor, *, method: str = "crown"
) -> torch.Tensor:
    """Per box and class k, a lower bound on z_y - z_k over the box ((B, C); +inf at k = y)."""
    hidden = hidden_bounds(net, xl, xu, method=method)
    if method == "interval":
        lower, _ = spec_bounds(net, hidden, margin_rows(labels, net.num_classes), xl, xu, method=method)
        return lower.scatter(1, labels.unsqueeze(1), math.inf)
    others, rows = rival_rows(labels, net.num_classes)
    lower = torch.full((len(labels), net.num_classes), math.inf, dtype=xl.dtype)
    return lower.scatter(1, others, spec_lower(net, hidden, rows, xl, xu))


def box(x: torch.Tensor, radius: torch.Tensor | float, bounds: tuple[float, float]) -> Interval:
    """The L-inf ball of `radius` ((B,) or a number) around x (B, n), intersected with the bounds."""
    r = torch.as_tensor(radius, dtype=x.dtype).reshape(-1, 1)
    return (x - r).clamp_min(bounds[0]), (x + r).clamp_max(bounds[1])


RADIUS_GRID = 32  # radii tried per class when looking for relaxation-certified lower bounds


def certified_radii(
    net: ReluNetwork, x: torch.Tensor, label: int, cap: float, bounds: tuple[float, float]
) -> torch.Tensor:
    """Per class k, the largest radius r on a grid in [0, cap] at which CROWN proves z_k < z_y
    on the whole box around x (n,): no input closer than r reaches class k (inf for k = y).
    The grid's boxes are bounded in one batch."""
    radii = cap * torch.arange(1, RADIUS_GRID + 1, dtype=torch.float64) / RADIUS_GRID
    xl, xu = box(x.expand(RADIUS_GRID, -1), radii, bounds)
    lower = margin_bounds(net, xl, xu, torch.full((RADIUS_GRID,), label))
    proven = torch.where(lower > 0, radii.unsqueeze(1), 0.0).amax(0)
    proven[label] = math.inf
    return proven
