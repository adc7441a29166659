"""`advlab explore`: one self-contained HTML page that teaches the linear argument.

The page shows (1) the worked example, (2) Goodfellow et al. 2014, Fig. 2 live: logistic
regression on 3 vs 7 with its test error under the worst-case L-inf perturbation (box-clipped)
computed exactly in the page for every eps, and (3) Szegedy et al. 2013, Sec. 4.1: the targeted
L-BFGS search over c for a few digits beside the exact minimal L2 perturbation. The numbers come
from `advlab.experiments.explore`; this module only formats them. Everything (scripts, styles,
data) is inlined: the file opens from disk with no network. The JavaScript in `explore_assets/`
is the page's own; no external library.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advlab.errors import InputError
from advlab.experiments.explore import LBFGS_TEMPERATURE, WORKED_EXAMPLE, ExplorerData, binary_linear
from advlab.io import write_text_atomic

ASSETS = ("common.js", "worked.js", "fig2.js", "szegedy.js")
PAGE_NAME = "explore.html"


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def build_payload(data: ExplorerData) -> dict[str, Any]:
    """Everything the page shows, JSON-ready: pixels as uint8 (MNIST is k/255), weights float64, perturbations float32."""
    test, eps, fgsm_error, traces = data.test, data.eps, data.fgsm_error, data.traces
    w, b = binary_linear(data.model)
    pixels = (test.images.flatten(1).double() * 255).round()
    if not torch.equal((pixels.float() / 255).view_as(test.images), test.images.float()):
        raise InputError("explore embeds pixels as multiples of 1/255 (MNIST); these images are not")
    return {
        "worked": WORKED_EXAMPLE,
        "fig2": {
            "classes": list(data.classes),
            "source": data.source,
            "n": len(test),
            "weight": _b64(w.numpy(), "<f8"),
            "bias": b,
            "images": _b64(pixels.numpy(), "u1"),
            "labels": test.labels.tolist(),
            "eps": eps,
            "fgsm_error": fgsm_error,
            "fgsm_wrong": round(fgsm_error * len(test)),
        },
        "szegedy": [
            {
                "index": t.index, "label": t.label, "target": t.target,
                "image": _b64(pixels[t.index].numpy(), "u1"),
                "steps": [{"c": s.c, "success": s.success, "distance": s.distance} for s in t.steps],
                "lbfgs": {"distance": t.lbfgs_distance, "r": _b64(t.lbfgs_r.numpy(), "<f4")},
                "exact": {"distance": t.exact_distance, "r": _b64(t.exact_r.numpy(), "<f4")},
            }
            for t in traces
        ],
    }


def render_page(payload: dict[str, Any], *, command: str = "advlab explore") -> str:
    """The page: the template with the styles, the scripts and the data inlined."""
    assets = resources.files("advlab.report").joinpath("explore_assets")
    template = assets.joinpath("page.html").read_text(encoding="utf-8")
    style = assets.joinpath("page.css").read_text(encoding="utf-8")
    script = "\n".join(assets.joinpath(name).read_text(encoding="utf-8") for name in ASSETS)
    # JSON inside <script>: "</" and "<!--" must not appear literally
    data = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c")
    values = {"STYLE": style, "SCRIPT": script, "DATA": data, "COMMAND": html.escape(command),
              "TEMPERATURE": f"{LBFGS_TEMPERATURE:g}"}
    return re.sub(r"/\*(STYLE|SCRIPT|DATA|COMMAND|TEMPERATURE)\*/", lambda match: values[match.group(1)], template)


def write_page(payload: dict[str, Any], out_dir: str | Path, *, command: str = "advlab explore") -> Path:
    """Write OUT_DIR/explore.html atomically and return its path."""
    path = Path(out_dir) / PAGE_NAME
    write_text_atomic(path, render_page(payload, command=command))
    return path
