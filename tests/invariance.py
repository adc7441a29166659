"""What docs/guide/reproducibility.md promises across batch sizes, thread counts, processes and
CPU kernels, as assertions (the tests using them carry the `invariance` marker).

- Random draws: bit-identical (`torch.equal`), they are computed by a counter-based generator.
- float64 adversarial points: equal within ATOL (inputs in a box of width 1: 1e-10 of its width).
  The model's own arithmetic (BLAS blocking, vector width, thread count) differs in the last
  bits, about 1e-16, between batch shapes and kernels; a wrong draw or a wrong step moves a
  point by about eps, 1e-3 or more.
- Success flags: equal on every example whose decisive margin at the adversarial point (the
  gap between its two largest logits) exceeds MARGIN_RTOL (1 + max |logit|): nearer than that,
  rounding may decide the argmax. Such near-ties must stay rare (at most SPARE_SHARE of the rows),
  or the comparison would prove nothing.
"""

from __future__ import annotations

import torch

from advlab.attacks.result import AttackResult

ATOL = 1e-10
MARGIN_RTOL = 1e-9
SPARE_SHARE = 0.1


def clear_rows(*results: AttackResult) -> torch.Tensor:
    """Examples whose top-two logit gap at the adversarial point is beyond rounding in every result."""
    clear = torch.ones(len(results[0].success), dtype=torch.bool)
    for result in results:
        top = result.adv_logits.double().topk(2, dim=1).values
        scale = 1 + result.adv_logits.double().abs().amax(1)
        clear &= (top[:, 0] - top[:, 1] > MARGIN_RTOL * scale).cpu()
    assert int((~clear).sum()) <= SPARE_SHARE * len(clear), f"{int((~clear).sum())} of {len(clear)} rows are near-ties"
    return clear


def assert_same_per_example(a: AttackResult, b: AttackResult, atol: float = ATOL) -> None:
    """a and b agree as promised: success flags and adversarial points (within atol) on the clear rows."""
    assert a.x_adv.dtype == b.x_adv.dtype == torch.float64, "the tolerance is stated for float64"
    clear = clear_rows(a, b)
    assert torch.equal(a.success[clear], b.success[clear])
    gap = (a.x_adv - b.x_adv)[clear].abs().amax() if bool(clear.any()) else torch.tensor(0.0)
    assert float(gap) <= atol, f"adversarial points differ by {float(gap):.3g} > {atol}"
