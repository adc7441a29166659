"""bench/szegedy_ae400.py: variants parse, and each is trained and attacked as the szegedy run does."""

from __future__ import annotations

import argparse

import pytest

from advlab.experiments.szegedy.settings import SzegedySettings
from tests.bench import bench_script

ae400 = bench_script("szegedy_ae400")


def test_variants_parse_into_training_overrides():
    assert ae400.overrides("epochs=3,weight_decay=1e-4") == {"epochs": 3, "weight_decay": 1e-4}
    with pytest.raises(argparse.ArgumentTypeError, match="key=value"):
        ae400.overrides("epochs")


def test_a_variant_is_measured_on_the_runs_own_images_with_its_changes(embedded):
    settings = SzegedySettings()
    changes = {"epochs": 1, "weight_decay": 1e-3, "arch.fine_tune": True}  # fine-tuned: one epoch classifies the images
    figures = ae400.measure(embedded, ae400.szegedy_images(embedded, 3, settings), changes, settings)
    assert figures["variant"] == changes and figures["images"] == 3
    assert 0 < figures["adversarial"] <= 3 and 0 < figures["distortion"] < 1
    assert 0 <= figures["train_error"] < 0.5 and 0 <= figures["test_error"] < 0.5
    assert "AE400" not in ae400.line(figures) and "distortion" in ae400.line(figures)


def test_a_variant_may_change_the_architecture(embedded):
    settings = SzegedySettings()
    changes = {"epochs": 1, "arch.fine_tune": False, "arch.hidden": 16}
    figures = ae400.measure(embedded, ae400.szegedy_images(embedded, 2, settings), changes, settings)
    assert figures["variant"] == changes and 0 <= figures["adversarial"] <= 2
