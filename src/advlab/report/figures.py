"""Figures drawn with matplotlib's Agg backend (no display needed), written atomically."""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from advlab.io import write_bytes_atomic  # noqa: E402


def image_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """Tile (N, 1, H, W) images into one (rows*H, columns*W) array, padding with 1-px gaps."""
    images = images.detach().cpu().float().reshape(images.shape[0], *images.shape[-2:]).numpy()
    n, h, w = images.shape
    rows = -(-n // columns)
    grid = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1), dtype=np.float32)
    for index, image in enumerate(images):  # figure assembly, not a hot path
        r, c = divmod(index, columns)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    return grid


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())


FORMATS = ("png", "pdf", "svg")


def save_figure_formats(figure: Figure, stem: str | os.PathLike[str], *, dpi: int = 300) -> list[str]:
    """STEM.png (at `dpi`), STEM.pdf and STEM.svg (vector), each written atomically; the paths."""
    paths = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        paths.append(f"{os.fspath(stem)}.{fmt}")
        write_bytes_atomic(paths[-1], buffer.getvalue())
    plt.close(figure)
    return paths
