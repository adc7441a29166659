"""Norm geometry (project, step, direction, distance) and the counter-based random starts."""

import copy
import dataclasses

import pytest
import torch

from advlab.attacks import PGD, AttackResult
from advlab.attacks.geometry import GEOMETRIES, geometry, random_start
from advlab.attacks.randomness import counter_uniform
from advlab.errors import InputError
from tests.invariance import assert_same_per_example


def _rows(result: AttackResult, rows: slice) -> AttackResult:
    """The per-example fields of `result` for `rows` (what the invariance checks read)."""
    return dataclasses.replace(result, x=result.x[rows], x_adv=result.x_adv[rows], labels=result.labels[rows],
                               success=result.success[rows], clean_logits=result.clean_logits[rows],
                               adv_logits=result.adv_logits[rows])

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _mix(z: int) -> int:
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _reference_uniform(seed: int, index: int, draw: int, j: int) -> float:
    """splitmix64 in plain Python integers: what counter_uniform must compute with int64 tensors."""
    key = _mix(_mix(_mix((seed + 1) * GOLDEN) + index * GOLDEN) + (draw + 1) * GOLDEN)
    return ((_mix(key + (j + 1) * GOLDEN) >> 11) + 0.5) * 2.0**-53


@pytest.mark.parametrize("seed, draw", [(0, 0), (12345, 3), (2**40, -1)])
def test_counter_uniform_matches_the_reference(seed, draw):
    indices = [0, 1, 7, 10**9, 2**40]
    u = counter_uniform(seed, torch.tensor(indices), draw, 6)
    for i, index in enumerate(indices):
        for j in range(6):
            assert u[i, j].item() == _reference_uniform(seed, index, draw, j)
    big = counter_uniform(seed, torch.arange(2000), draw, 500)
    assert 0 < float(big.min()) and float(big.max()) < 1 and abs(float(big.mean()) - 0.5) < 0.002


@pytest.mark.invariance
def test_random_start_depends_only_on_seed_index_and_draw():
    x = torch.rand(20, 1, 4, 4)
    for g in GEOMETRIES.values():
        whole = random_start(g, x, 0.3, 5, torch.arange(20), 2)
        part = random_start(g, x[7:12], 0.3, 5, torch.arange(7, 12), 2)
        assert torch.equal(whole[7:12], part)
        assert not torch.equal(whole, random_start(g, x, 0.3, 5, torch.arange(20), 3))
        assert bool((g.distance(whole - x) <= 0.3 * (1 + 1e-6)).all())
        assert torch.equal(random_start(g, x, 0.0, 5, torch.arange(20), 0), x)


def test_l2_random_start_is_uniform_in_the_ball():
    g = geometry("l2")
    n = 3
    points = g.unit_sample(n, counter_uniform(0, torch.arange(20000), 0, n + 1 + n % 2))
    radius = points.norm(dim=1)
    # uniform in the unit ball of R^3: P(r <= t) = t^3; mean of each coordinate 0
    assert float(radius.max()) <= 1 and abs(float((radius <= 0.5).double().mean()) - 0.125) < 0.01
    assert float(points.mean(0).abs().max()) < 0.02


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_project_step_and_distance(norm):
    g = geometry(norm)
    torch.manual_seed(0)
    x, z = torch.rand(16, 10), torch.rand(16, 10) * 3 - 1
    eps = torch.linspace(0, 0.5, 16)
    p = g.project(x, z, eps, (0.0, 1.0))
    assert bool((g.distance(p - x) <= eps * (1 + 1e-6) + 1e-7).all()) and bool(((p >= 0) & (p <= 1)).all())
    inside = x + 0.5 * (p - x)
    assert torch.equal(g.project(x, inside, eps, (0.0, 1.0)), inside)  # feasible points are returned bit for bit
    torch.testing.assert_close(g.project(x, p, eps, (0.0, 1.0)), p)
    assert torch.equal(g.project(x, z, 0.0, (0.0, 1.0)), x)
    region = g.region(x, eps, (0.0, 1.0))
    assert torch.equal(region.project(z), p)
    grad = torch.randn(16, 10)
    d = g.direction(grad)
    assert torch.allclose(g.distance(d), torch.ones(16))  # a unit step...
    assert torch.allclose((grad * d).sum(1), g.dual(grad))  # ...that achieves the dual norm
    assert torch.allclose(g.distance(g.scaled(grad)), torch.ones(16))
    assert g.diameter(1.0, 4) == {"linf": 1.0, "l2": 2.0, "l1": 4.0}[norm]


def test_unknown_norm():
    with pytest.raises(InputError, match="norm must be one of linf, l2"):
        geometry("l3")


@pytest.mark.invariance
@pytest.mark.parametrize("kwargs", [{"norm": "l2", "eps": 2.0}, {"norm": "linf", "eps": 0.05, "restarts": 3},
                                    {"norm": "l2", "eps": 1.0, "restarts": 2, "early_exit": True}])
def test_pgd_random_starts_do_not_depend_on_batch_size(softmax_model, embedded, kwargs):
    """Fails on the old per-batch generator (differences up to 0.2 between batch sizes 7 and 1000).

    The starts are bit-identical (test above). The model's own float32 arithmetic may differ in
    the last bit between batch shapes (BLAS blocking), which can flip the sign of a near-zero
    gradient coordinate under L-inf; in float64 the whole attack agrees to 1e-12.
    """
    x, y = embedded.test.images[:50].double(), embedded.test.labels[:50]
    model = copy.deepcopy(softmax_model).double()
    pieces, whole = (PGD(model, steps=5, seed=3, batch_size=b, **kwargs)(x, y) for b in (7, 1000))
    assert_same_per_example(pieces, whole)


@pytest.mark.invariance
def test_pgd_indices_select_the_same_draws(softmax_model, embedded):
    """A shard is another batch shape: its points equal the whole call's as promised (float64)."""
    x, y = embedded.test.images[:30].double(), embedded.test.labels[:30]
    attack = PGD(copy.deepcopy(softmax_model).double(), eps=0.3, steps=3, restarts=2, seed=1)
    whole = attack(x, y)
    shard = attack(x[10:20], y[10:20], indices=torch.arange(10, 20))
    assert_same_per_example(shard, _rows(whole, slice(10, 20)))
    assert float((whole.x_adv[:10] - attack(x[10:20], y[10:20]).x_adv).abs().max()) > 1e-3  # indices pick the draws


def _l1_projection_by_bisection(u: torch.Tensor, cap: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The same projection found independently: 200 bisections on the threshold (float64)."""
    lo, hi = torch.zeros_like(eps), u.abs().amax(1)
    for _ in range(200):
        mid = (lo + hi) / 2
        size = torch.minimum((u.abs() - mid[:, None]).clamp_min(0), cap).sum(1)
        lo, hi = torch.where(size > eps, mid, lo), torch.where(size > eps, hi, mid)
    lam = torch.where(torch.minimum(u.abs(), cap).sum(1) <= eps, 0.0, hi)
    return u.sign() * torch.minimum((u.abs() - lam[:, None]).clamp_min(0), cap)


def test_l1_projection_onto_ball_and_box_is_exact():
    """Croce & Hein 2021, Lemma 1: the projection onto the L1 ball ∩ box is a soft threshold
    clipped to the box; checked against bisection and against its optimality conditions."""
    g = geometry("l1")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(64, 30, generator=generator, dtype=torch.float64)
    z = x + 0.4 * torch.randn(64, 30, generator=generator, dtype=torch.float64)
    eps = torch.rand(64, generator=generator, dtype=torch.float64) * 2
    p = g.project(x, z, eps, (0.0, 1.0))
    delta = z - x
    cap = torch.where(delta > 0, 1 - x, x)
    torch.testing.assert_close(p - x, _l1_projection_by_bisection(delta, cap, eps), atol=1e-10, rtol=0)
    assert bool((g.distance(p - x) <= eps + 1e-12).all()) and bool(((p >= 0) & (p <= 1)).all())
    # a radial shrink would also be feasible, but farther from z: the projection is closer
    radial = geometry("l2").project(x, x + delta * (eps / g.distance(delta)).clamp_max(1)[:, None], 10.0, (0.0, 1.0))
    assert bool(((p - z).norm(dim=1) <= (radial - z).norm(dim=1) + 1e-12).all())


def test_l1_random_start_is_uniform_in_the_cross_polytope():
    g = geometry("l1")
    n = 2
    points = g.unit_sample(n, counter_uniform(0, torch.arange(20000), 0, n + 1 + n % 2))
    size = points.abs().sum(1)
    # uniform in the unit L1 ball of R^2: P(||p||_1 <= t) = t^2, each quadrant a quarter
    assert float(size.max()) <= 1 and abs(float((size <= 0.5).double().mean()) - 0.25) < 0.01
    assert abs(float((points > 0).all(1).double().mean()) - 0.25) < 0.01


def test_l1_sparse_ascent_moves_the_top_share_of_coordinates():
    """APGD-L1's step: sign(g) on the coordinates with the largest |g_i| (a share `sparsity`), an L1 step of length `step`."""
    g = torch.tensor([[0.1, -3.0, 2.0, 0.5, -0.2, 1.0, 0.0, 4.0, -0.3, 0.05]])
    scale, direction = geometry("l1").ascent(g, torch.tensor([2.0]), torch.tensor([0.3]))
    assert torch.equal(direction, torch.tensor([[0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]]))
    assert torch.allclose(geometry("l1").distance(scale[:, None] * direction), torch.tensor([2.0]))
