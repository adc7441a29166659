"""The VNN-LIB parser: the subset VNN-COMP uses, normal form, one-line errors with line numbers."""

from __future__ import annotations

import pytest
import torch

from advlab.errors import InputError
from advlab.formats.vnnlib import format_counterexample, parse_vnnlib, read_vnnlib

ROBUST = """; a robustness property of label 1
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (<= X_0 0.5))
(assert (>= X_0 -0.5))
(assert (<= X_1 1e-1))
(assert (>= X_1 0.0))
(assert (<= X_1 2.0))
(assert (or
    (and (>= Y_0 Y_1))
    (and (>= Y_2 Y_1))
))
"""


def test_robustness_property_in_normal_form():
    prop = parse_vnnlib(ROBUST)
    torch.testing.assert_close(prop.lower, torch.tensor([-0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(prop.upper, torch.tensor([0.5, 0.1], dtype=torch.float64))  # the tightest bound wins
    assert prop.num_inputs == 2 and prop.num_outputs == 3 and len(prop.disjuncts) == 2
    c, d = prop.disjuncts[0]  # Y_1 - Y_0 <= 0
    torch.testing.assert_close(c, torch.tensor([[-1.0, 1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(d, torch.zeros(1, dtype=torch.float64))
    y = torch.tensor([[0.0, 1.0, 0.5], [2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    assert prop.violated(y).tolist() == [False, True, True]  # ties count: the constraints are <=
    assert prop.slack(y).tolist() == [0.5, -1.0, 0.0]


def test_linear_terms_top_level_conjunction_and_product_of_ors():
    text = """(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)
(assert (>= 1 X_0)) (assert (<= -1 X_0))
(assert (<= (+ Y_0 (* 2 Y_1) (- 3)) (- Y_1 0.5)))
(assert (or (<= Y_0 0) (and (>= Y_1 1) (<= Y_1 2))))
"""
    prop = parse_vnnlib(text)
    assert prop.lower.tolist() == [-1.0] and prop.upper.tolist() == [1.0]
    assert len(prop.disjuncts) == 2
    c, d = prop.disjuncts[1]  # Y_0 + Y_1 <= 2.5, -Y_1 <= -1, Y_1 <= 2
    assert c.tolist() == [[1.0, 1.0], [0.0, -1.0], [0.0, 1.0]] and d.tolist() == [2.5, -1.0, 2.0]


def test_no_output_constraint_means_every_point_violates():
    prop = parse_vnnlib("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 1))(assert (>= X_0 0))")
    assert prop.violated(torch.tensor([[5.0]])).tolist() == [True]


@pytest.mark.parametrize("text, message", [
    ("(declare-const X_0 Real)\n(assert (<= X_0 1)", r"<vnnlib>:2: '\(' is never closed"),
    ("(declare-const X_0 Real))", r"<vnnlib>:1: '\)' without a matching"),
    ("(declare-const X_0 Int)", r"<vnnlib>:1: expected \(declare-const"),
    ("(declare-const Z_0 Real)", r"<vnnlib>:1: variable 'Z_0'"),
    ("(declare-const X_0 Real)\n\n(assert (<= X_1 1))", r"<vnnlib>:3: X_1 is used before"),
    ("(declare-const X_0 Real)\n(assert (< X_0 1))", r"<vnnlib>:2: unsupported constraint \(< ...\)"),
    ("(declare-const X_0 Real)\n(assert (<= (* X_0 X_0) 1))", r"<vnnlib>:2: a product of variables"),
    ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(assert (<= (+ X_0 X_1) 1))", r"<vnnlib>:3: input constraints must bound one"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)\n(assert (<= X_0 Y_0))", r"<vnnlib>:2: a constraint mixes X and Y"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)\n(assert (or (and (<= X_0 1))))", r"<vnnlib>:2: input constraints inside"),
    ("(check-sat)", r"<vnnlib>:1: unsupported statement 'check-sat'"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 1))", r"<vnnlib>: X_0 has no lower bound"),
    ("(declare-const X_1 Real)(declare-const Y_0 Real)", r"the X variables declared are not X_0"),
    ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (<= X_0 0))(assert (>= X_0 1))", "lower bound 1.0 above"),
    ("foo", r"<vnnlib>:1: 'foo' outside any"),
])
def test_errors_name_the_line_in_one_line(text, message):
    with pytest.raises(InputError, match=message) as info:
        parse_vnnlib(text)
    assert "\n" not in str(info.value)


def test_read_file_and_missing_file(tmp_path):
    path = tmp_path / "p.vnnlib"
    path.write_text(ROBUST)
    assert read_vnnlib(path).num_inputs == 2
    with pytest.raises(InputError, match="no such VNN-LIB file"):
        read_vnnlib(tmp_path / "missing.vnnlib")
    path.write_text(ROBUST.replace("(>= Y_2 Y_1)", "(>= Y_2 Y_9)"))
    with pytest.raises(InputError, match=rf"{path.name}:14: Y_9 is used before"):
        read_vnnlib(path)


def test_counterexample_format_round_trips_floats():
    text = format_counterexample(torch.tensor([0.1, 1 / 3], dtype=torch.float64), torch.tensor([2.0]))
    assert text == f"((X_0 0.1)\n (X_1 {1 / 3!r})\n (Y_0 2.0))\n"
