"""The numbers Szegedy et al. 2013 ("Intriguing properties of neural networks", arXiv:1312.6199v4)
report for MNIST, as data: every cell of Tables 1-4 and the adversarial-training claim of Sec. 4.2.

Errors are fractions (0.117 = 11.7%), distortions sqrt(sum r^2 / n) with pixels in [0, 1].
Row and column names are advlab's display names (`display_name`), so a table built by the
experiment can be looked up cell by cell.
"""

from __future__ import annotations

ZOO_LABELS = ("FC10(1e-4)", "FC10(1e-2)", "FC10(1)", "FC100-100-10", "FC200-200-10", "AE400-10")
SPLIT_LABELS = ("FC100-100-10", "FC123-456-10", "FC100-100-10'")

# Table 1: model -> (training error, test error, average minimal distortion).
TABLE1: dict[str, tuple[float, float, float]] = {
    "FC10(1e-4)": (0.067, 0.074, 0.062),
    "FC10(1e-2)": (0.10, 0.094, 0.1),
    "FC10(1)": (0.212, 0.20, 0.14),
    "FC100-100-10": (0.0, 0.0164, 0.058),
    "FC200-200-10": (0.0, 0.0154, 0.065),
    "AE400-10": (0.0057, 0.019, 0.086),
}

# Table 2: rows = whose adversarial examples (or noise), columns = the model fed, in ZOO_LABELS order;
# TABLE2_DISTORTION: the table's last column ("Av. distortion").
_TABLE2_ROWS: dict[str, tuple[float, ...]] = {
    "FC10(1e-4)": (1.0, 0.117, 0.227, 0.02, 0.039, 0.027),
    "FC10(1e-2)": (0.871, 1.0, 0.352, 0.359, 0.273, 0.098),
    "FC10(1)": (0.719, 0.762, 1.0, 0.481, 0.47, 0.344),
    "FC100-100-10": (0.289, 0.137, 0.211, 1.0, 0.066, 0.02),
    "FC200-200-10": (0.382, 0.14, 0.238, 0.203, 1.0, 0.027),
    "AE400-10": (0.234, 0.16, 0.248, 0.094, 0.066, 1.0),
    "Gaussian noise, stddev 0.1": (0.05, 0.101, 0.183, 0.0, 0.0, 0.008),
    "Gaussian noise, stddev 0.3": (0.156, 0.113, 0.227, 0.05, 0.043, 0.031),
}
TABLE2: dict[tuple[str, str], float] = {
    (row, column): value for row, values in _TABLE2_ROWS.items() for column, value in zip(ZOO_LABELS, values)
}
TABLE2_DISTORTION: dict[str, float] = {
    "FC10(1e-4)": 0.062, "FC10(1e-2)": 0.1, "FC10(1)": 0.14, "FC100-100-10": 0.058, "FC200-200-10": 0.065,
    "AE400-10": 0.086, "Gaussian noise, stddev 0.1": 0.1, "Gaussian noise, stddev 0.3": 0.3,
}

# Table 3: model -> (training error, test error); trained on P1, P1 and P2, weight decays 1e-5, 1e-5, 1e-6.
TABLE3: dict[str, tuple[float, float]] = {
    "FC100-100-10": (0.0, 0.024),
    "FC123-456-10": (0.0, 0.025),
    "FC100-100-10'": (0.0, 0.023),
}

# Table 4: rows = whose adversarial examples (test images), columns = the model fed, in SPLIT_LABELS order.
# "magnified" rows: the same perturbations scaled up to average distortion 0.1 (by 0.1 / the row's distortion).
_TABLE4_ROWS: dict[str, tuple[float, ...]] = {
    "FC100-100-10": (1.0, 0.262, 0.059),
    "FC123-456-10": (0.0625, 1.0, 0.051),
    "FC100-100-10'": (0.082, 0.082, 1.0),
    "Gaussian noise, stddev 0.06": (0.022, 0.026, 0.024),
    "FC100-100-10, magnified": (1.0, 0.98, 0.43),
    "FC123-456-10, magnified": (0.96, 1.0, 0.22),
    "FC100-100-10', magnified": (0.27, 0.50, 1.0),
    "Gaussian noise, stddev 0.1": (0.026, 0.028, 0.027),
}
TABLE4: dict[tuple[str, str], float] = {
    (row, column): value for row, values in _TABLE4_ROWS.items() for column, value in zip(SPLIT_LABELS, values)
}
TABLE4_DISTORTION: dict[str, float] = {"FC100-100-10": 0.062, "FC123-456-10": 0.059, "FC100-100-10'": 0.058}
MAGNIFIED_DISTORTION = 0.1


def magnify_factor(row: str) -> float:
    """The factor the paper scaled row's perturbations by: 0.1 / its average distortion (e.g. 1.61)."""
    return MAGNIFIED_DISTORTION / TABLE4_DISTORTION[row]


# Sec. 4.2: "a regularized network with a pool of adversarial examples ... under 1.2% test error",
# against 1.6% with weight decay alone and 1.3% with dropout (FC100-100-10, full MNIST).
ADVERSARIAL_TRAINING = {"adversarial": 0.012, "weight_decay": 0.016, "dropout": 0.013}
POOL_RELATIVE = ADVERSARIAL_TRAINING["adversarial"] / ADVERSARIAL_TRAINING["weight_decay"] - 1  # -25%: the claimed change

# What Sec. 4.2 states about the setup behind that claim ("We used weight decay, but no dropout for
# this network"; "we only got improvements by generating adversarial examples for each layer outputs
# which were used to train all the layers above ... maintaining and updating a pool of adversarial
# examples for each layer separately"; "a random subset of which is continuously replaced"), under
# the keys `advlab.experiments.szegedy.pool.run_setup` computes. The paper gives no optimiser,
# schedule, weight-decay values, pool size or mixing ratio.
POOL_SETUP = {
    "network": "FC100-100-10",
    "regularisation": "weight decay, no dropout",
    "training images": 60_000,
    "pool examples for": "every layer's outputs (a pool per layer), each training the layers above it",
    "pool refresh": "continuous: a random subset replaced",
    "training length": "to convergence",
}


def all_cells() -> dict[str, dict[str, float]]:
    """Every encoded cell, keyed "table/row -> column" (the JSON form; tests count them)."""
    out: dict[str, dict[str, float]] = {"table1": {}, "table2": {}, "table3": {}, "table4": {}}
    for model, (train, test, dist) in TABLE1.items():
        out["table1"] |= {f"{model} -> train error": train, f"{model} -> test error": test, f"{model} -> distortion": dist}
    out["table2"] = {f"{r} -> {c}": v for (r, c), v in TABLE2.items()}
    out["table2"] |= {f"{r} -> distortion": v for r, v in TABLE2_DISTORTION.items()}
    for model, (train, test) in TABLE3.items():
        out["table3"] |= {f"{model} -> train error": train, f"{model} -> test error": test}
    out["table4"] = {f"{r} -> {c}": v for (r, c), v in TABLE4.items()}
    out["table4"] |= {f"{r} -> distortion": v for r, v in TABLE4_DISTORTION.items()}
    return out
