"""Checks against gradient masking, run with every robustness evaluation.

A defence can look robust only because its gradients no longer point the attacks anywhere useful
(saturated, zero, noisy or shattered gradients; Athalye, Carlini & Wagner 2018, Sec. 3). Carlini
et al. 2019 ("On Evaluating Adversarial Robustness", Sec. 5) list the symptoms checked here:

1. `iterative >= single-step`: PGD with restarts must be at least as strong as FGSM; at every
   eps > 0, accuracy under PGD <= accuracy under FGSM + tolerance.
2. `large eps -> 0`: with eps as wide as the box the attacker can reach any image, so accuracy
   under the strongest attack must fall to about 0 (<= `LARGE_EPS_MAX_ACCURACY`).
3. `transfer <= white-box`: examples crafted on an undefended source model must not beat the
   white-box attacks; at every eps > 0, transfer accuracy >= white-box worst case - tolerance.
4. `monotone in eps`: accuracy under each attack must not rise with eps by more than tolerance.
5. `single-step ~ iterative at large eps`: at the largest eps evaluated, FGSM accuracy must not
   exceed PGD accuracy by more than `MAX_SINGLE_STEP_GAP`. With a large budget one step is
   enough against a model whose loss is not masked; a single-step attack that stays weak there
   while PGD succeeds means the loss is masked locally for single steps (typical of single-step
   adversarial training, Tramer et al. 2018, Sec. 3), and FGSM figures overstate the robustness.

A check that cannot run (no PGD registered, no source model) is reported as skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from advlab.attacks import ATTACKS

from advlab.analysis.results import AttackPoint, MaskingCheck, RobustnessEvaluation

if TYPE_CHECKING:
    from advlab.analysis.evaluation import SuiteEvaluation

LARGE_EPS_MAX_ACCURACY = 0.05
MAX_SINGLE_STEP_GAP = 0.2


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def check_iterative(evaluation: RobustnessEvaluation, tolerance: float) -> MaskingCheck:
    name = "iterative >= single-step"
    if not {"fgsm", "pgd"} <= set(evaluation.attacks):
        missing = "pgd is not registered" if "pgd" not in ATTACKS else "fgsm and pgd were not both evaluated"
        return MaskingCheck(name, "skipped", f"{missing}; cannot compare PGD with FGSM")
    restarts = evaluation.point("pgd", evaluation.eps[-1]).params.get("restarts", 1)
    worse = [
        f"eps={e:g}: PGD {_pct(evaluation.point('pgd', e).accuracy)} > FGSM {_pct(evaluation.point('fgsm', e).accuracy)}"
        for e in evaluation.eps
        if e > 0 and evaluation.point("pgd", e).accuracy > evaluation.point("fgsm", e).accuracy + tolerance
    ]
    if worse:
        return MaskingCheck(name, "fail", f"PGD ({restarts} restart(s)) is weaker than FGSM: " + "; ".join(worse))
    return MaskingCheck(name, "pass", f"PGD ({restarts} restart(s)) is at least as strong as FGSM at every eps")


def large_eps_attack(attacks: Sequence[str]) -> str:
    """The attack whose large-eps point check 2 reads: PGD when evaluated, else the last one."""
    return "pgd" if "pgd" in attacks else attacks[-1]


def check_large_eps(point: AttackPoint) -> MaskingCheck:
    """Check 2 on the large-eps point, which the evaluation computes (a check runs no attack)."""
    name = "large eps -> 0"
    verdict = "pass" if point.accuracy <= LARGE_EPS_MAX_ACCURACY else "fail"
    detail = f"{point.attack} at eps={point.eps:g}: accuracy {_pct(point.accuracy)} (must be <= {_pct(LARGE_EPS_MAX_ACCURACY)})"
    if verdict == "fail":
        detail += "; the attack cannot find examples that must exist: its gradients are likely masked"
    return MaskingCheck(name, verdict, detail)


def check_transfer(evaluation: RobustnessEvaluation, tolerance: float) -> MaskingCheck:
    name = "transfer <= white-box"
    if not evaluation.transfer:
        return MaskingCheck(name, "skipped", "no undefended source model given")
    best: dict[float, float] = defaultdict(lambda: 1.0)
    for p in evaluation.transfer:
        best[p.eps] = min(best[p.eps], p.accuracy)
    worst_case = dict(zip(evaluation.eps, evaluation.worst_case))
    stronger = [
        f"eps={e:g}: transfer {_pct(acc)} < white-box {_pct(worst_case[e])}"
        for e, acc in sorted(best.items())
        if acc < worst_case[e] - tolerance
    ]
    if stronger:
        return MaskingCheck(name, "fail", f"attacks transferred from {evaluation.transfer[0].source} beat the white-box attacks: " + "; ".join(stronger))
    return MaskingCheck(name, "pass", f"white-box attacks are at least as strong as transfer from {evaluation.transfer[0].source} at every eps")


def check_monotone(evaluation: RobustnessEvaluation, tolerance: float) -> MaskingCheck:
    name = "monotone in eps"
    rises = [
        f"{attack}: {_pct(a)} at eps={e0:g} -> {_pct(b)} at eps={e1:g}"
        for attack in evaluation.attacks
        for (e0, a), (e1, b) in zip(zip(evaluation.eps, evaluation.curve(attack)), zip(evaluation.eps[1:], evaluation.curve(attack)[1:]))
        if b > a + tolerance
    ]
    if rises:
        return MaskingCheck(name, "fail", "accuracy rises with eps: " + "; ".join(rises))
    return MaskingCheck(name, "pass", "accuracy under every attack falls (or stays) as eps grows")


def check_single_step_gap(evaluation: RobustnessEvaluation) -> MaskingCheck:
    name = "single-step ~ iterative at large eps"
    if not {"fgsm", "pgd"} <= set(evaluation.attacks) or evaluation.eps[-1] == 0:
        return MaskingCheck(name, "skipped", "needs fgsm and pgd results at some eps > 0")
    eps = evaluation.eps[-1]
    fgsm, pgd = evaluation.point("fgsm", eps).accuracy, evaluation.point("pgd", eps).accuracy
    detail = f"at eps={eps:g}: FGSM {_pct(fgsm)} vs PGD {_pct(pgd)}"
    if fgsm - pgd > MAX_SINGLE_STEP_GAP:
        return MaskingCheck(name, "fail", f"{detail}: the loss is masked for single steps; FGSM figures overstate the robustness")
    return MaskingCheck(name, "pass", f"{detail} (gap at most {_pct(MAX_SINGLE_STEP_GAP)})")


def masking_checks(evaluation: RobustnessEvaluation, large_point: AttackPoint, *, tolerance: float) -> list[MaskingCheck]:
    """All five checks, in the order of the module docstring; `large_point` is the large-eps
    point of `large_eps_attack(evaluation.attacks)`."""
    return [
        check_iterative(evaluation, tolerance),
        check_large_eps(large_point),
        check_transfer(evaluation, tolerance),
        check_monotone(evaluation, tolerance),
        check_single_step_gap(evaluation),
    ]


# ---- checks on an attack-suite evaluation (advlab.analysis.evaluation), pure functions of it ------
SQUARE_MAX_SHARE = 0.002  # AutoAttack's threshold (check_square_sr): 0.2 points
TARGETED_MAX_SHARE = 0.01
DOUBLING_MAX_DROP = 0.005
GRADIENT_MAX_SHARE = 0.01


def check_randomised(evaluation: SuiteEvaluation) -> MaskingCheck:
    name = "deterministic logits"
    probe = evaluation.probe
    if not probe:
        return MaskingCheck(name, "skipped", "no probe of the model was recorded")
    if probe["max_logit_change"] > 1e-4:
        return MaskingCheck(name, "fail", f"two forward passes differ by up to {probe['max_logit_change']:.3g}: the model is "
                            "randomised, so one attack run proves little; evaluate with expectation over its randomness (EOT)")
    if probe["probabilities"]:
        return MaskingCheck(name, "fail", "the outputs are probabilities (non-negative, sum to 1): gradients through a softmax "
                            "saturate; evaluate the model without its final softmax")
    return MaskingCheck(name, "pass", "two forward passes agree and the outputs are logits")


def check_gradients(evaluation: SuiteEvaluation) -> MaskingCheck:
    name = "gradients alive"
    probe = evaluation.probe
    if not probe:
        return MaskingCheck(name, "skipped", "no probe of the model was recorded")
    share = probe["zero_or_nonfinite_gradient_share"]
    detail = f"{_pct(share)} of {int(probe['probed_points'])} clean points have a zero or non-finite input gradient"
    if share > GRADIENT_MAX_SHARE:
        return MaskingCheck(name, "fail", f"{detail}: gradient attacks cannot move there (shattered or saturated gradients); "
                            "rely on the black-box attacks' figures and try BPDA or a smooth surrogate")
    return MaskingCheck(name, "pass", detail)


def check_black_box(evaluation: SuiteEvaluation) -> MaskingCheck:
    name = "black-box <= white-box"
    black = [a for a in evaluation.attacks if a.startswith("square")]
    if (not black or len(evaluation.attacks) < 2) and "black_box" in evaluation.carlini:
        return _sample_check(name, evaluation, evaluation.carlini["black_box"], "Square (5,000 queries)",
                             "the gradients mislead the white-box attacks; trust the black-box figure and add Square to the suite")
    if not black or len(evaluation.attacks) < 2:
        return MaskingCheck(name, "skipped", "the suite has no Square attack after white-box attacks (run_carlini_checks runs one)")
    share = sum(evaluation.broken_by.count(a) for a in black) / evaluation.n
    detail = f"Square broke {_pct(share)} of the points every white-box attack missed"
    if share > SQUARE_MAX_SHARE:
        return MaskingCheck(name, "fail", f"{detail}: the gradients mislead the white-box attacks; run Square with more "
                            "queries and restarts, or an adaptive attack")
    return MaskingCheck(name, "pass", f"{detail} (at most {_pct(SQUARE_MAX_SHARE)})")


def check_targeted(evaluation: SuiteEvaluation) -> MaskingCheck:
    name = "targeted ~ untargeted"
    if not {"apgd-ce", "apgd-t"} <= set(evaluation.attacks):
        return MaskingCheck(name, "skipped", "needs apgd-ce followed by apgd-t in the suite")
    share = evaluation.broken_by.count("apgd-t") / evaluation.n
    detail = f"APGD-T broke {_pct(share)} of the points APGD-CE left"
    if share > TARGETED_MAX_SHARE:
        return MaskingCheck(name, "fail", f"{detail}: the cross-entropy loss is likely masked (e.g. scaled logits); trust only "
                            "margin or DLR losses and report the whole suite")
    return MaskingCheck(name, "pass", f"{detail} (at most {_pct(TARGETED_MAX_SHARE)})")


def check_doubling(evaluation: SuiteEvaluation, doubled: SuiteEvaluation | None) -> MaskingCheck:
    """`doubled`: the same evaluation with the strongest attack's iterations doubled, run by the user;
    without it, the doubled budget `run_carlini_checks` ran on a sample, when it did."""
    name = "more iterations ~ same"
    if doubled is None and "doubled" in evaluation.carlini:
        return _sample_check(name, evaluation, evaluation.carlini["doubled"], "the suite at twice its steps, queries and restarts",
                             "the attacks have not converged; raise their budgets until the figure stops falling")
    if doubled is None:
        return MaskingCheck(name, "skipped", "no evaluation with doubled iterations given (run the suite again with "
                            "twice the steps and pass it)")
    drop = evaluation.robust_accuracy - doubled.robust_accuracy
    detail = f"robust accuracy {_pct(evaluation.robust_accuracy)} -> {_pct(doubled.robust_accuracy)} with doubled iterations"
    if drop > DOUBLING_MAX_DROP:
        return MaskingCheck(name, "fail", f"{detail}: the attacks have not converged; raise their budgets until the figure stops falling")
    return MaskingCheck(name, "pass", detail)


CONVERGED_TAIL_SHARE = 0.05  # the last quarter of the iterations may add at most 5% of the loss's total rise


def _sample_check(name: str, evaluation: SuiteEvaluation, found: dict[str, int], what: str, advice: str) -> MaskingCheck:
    """Pass when `what` broke none of the sample of points the suite left robust."""
    detail = f"{what} broke {found['broken']} of {found['points']} points the suite left robust"
    if found["broken"] > 0:
        return MaskingCheck(name, "fail", f"{detail} (robust accuracy overstated by >= {_pct(found['broken'] / evaluation.n)}): {advice}")
    return MaskingCheck(name, "pass", detail)


def check_convergence(evaluation: SuiteEvaluation) -> MaskingCheck:
    """Carlini et al. 2019, Sec. 4.4: the attack's loss must level off within its iterations."""
    name = "attack loss converges"
    curve = evaluation.carlini.get("loss_curve")
    if not curve or len(curve) < 5:
        return MaskingCheck(name, "skipped", "no loss curve recorded (run_carlini_checks records one)")
    rise, tail = curve[-1] - curve[0], curve[-1] - curve[(3 * (len(curve) - 1)) // 4]
    detail = f"mean best APGD-T loss {curve[0]:.4g} -> {curve[-1]:.4g} over {len(curve) - 1} iterations, {tail:.3g} in the last quarter"
    if tail > CONVERGED_TAIL_SHARE * max(rise, 0.0) and tail > 1e-6:
        return MaskingCheck(name, "fail", f"{detail}: the loss is still rising; give the attacks more iterations")
    return MaskingCheck(name, "pass", detail)


def check_unbounded(evaluation: SuiteEvaluation) -> MaskingCheck:
    """Carlini et al. 2019, Sec. 5.4: with eps as wide as the box, accuracy must reach 0."""
    name = "unbounded eps -> 0"
    found = evaluation.carlini.get("unbounded")
    if found is None:
        return MaskingCheck(name, "skipped", "not run (run_carlini_checks runs it, L-inf only)")
    detail = f"the suite at eps={found['eps']:g} leaves {_pct(found['accuracy'])} of the sample robust (must be <= {_pct(LARGE_EPS_MAX_ACCURACY)})"
    if found["accuracy"] > LARGE_EPS_MAX_ACCURACY:
        return MaskingCheck(name, "fail", f"{detail}: the attacks cannot find examples that must exist; gradients are likely masked")
    return MaskingCheck(name, "pass", detail)


def check_transfer_suite(evaluation: SuiteEvaluation) -> MaskingCheck:
    """Carlini et al. 2019, Sec. 5.5: examples transferred from a surrogate must not beat the white-box attacks."""
    name = "transfer <= white-box"
    found = evaluation.carlini.get("transfer")
    if found is None:
        return MaskingCheck(name, "skipped", "no surrogate model given to run_carlini_checks")
    return _sample_check(name, evaluation, found, f"APGD-CE transferred from {found['source']}",
                         "the white-box attacks are misled; report the transfer figure and adapt the attack")


def suite_checks(evaluation: SuiteEvaluation, doubled: SuiteEvaluation | None = None) -> list[MaskingCheck]:
    """The checks of Croce & Hein 2020 (Sec. 6) and Carlini et al. 2019 that read a suite evaluation
    (those of `run_carlini_checks` skipped when it was not run)."""
    return [check_randomised(evaluation), check_gradients(evaluation), check_black_box(evaluation),
            check_targeted(evaluation), check_convergence(evaluation), check_unbounded(evaluation),
            check_transfer_suite(evaluation), check_doubling(evaluation, doubled)]
