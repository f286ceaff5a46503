"""Figures as PNG files (matplotlib, Agg backend, no screen needed): learning curves, parity
plots and embedding maps for the study report and ``openjmp evaluate``; `pyplot` and
`save_figure` for any other figure (``openjmp validate``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (atomically, parents created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)
    pyplot().close(fig)
    return path


def learning_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logy: bool = True,
) -> Path:
    """One line per named curve; ``curves[name] = (x, y)``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, (x, y) in curves.items():
        ax.plot(np.asarray(x), np.asarray(y), marker="o", ms=3, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def parity(
    arms: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    *,
    title: str,
    unit: str,
) -> Path:
    """Predicted against true values, one panel per arm; ``arms[name] = (true, pred)`` (flattened)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(arms), figsize=(4.2 * len(arms), 4.0), squeeze=False)
    for ax, (name, (y, p)) in zip(axes[0], arms.items()):
        y, p = np.ravel(y), np.ravel(p)
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.scatter(y, p, s=4, alpha=0.5)
        mae = float(np.mean(np.abs(p - y)))
        ax.set(
            title=f"{name}: MAE {mae:.4g} {unit}",
            xlabel=f"true ({unit})",
            ylabel=f"predicted ({unit})",
        )
        ax.set_aspect("equal", adjustable="datalim")
    fig.suptitle(title)
    return save_figure(fig, path)


def embedding_map(
    embeddings: np.ndarray,
    labels: Sequence[str],
    path: Path,
    *,
    title: str,
    seed: int = 0,
) -> Path:
    """2-D t-SNE of pooled embeddings (M, D), coloured by label (as the paper's Figure)."""
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, dtype=np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-12)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    labels_arr = np.asarray(labels)
    for name in dict.fromkeys(labels):
        m = labels_arr == name
        ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.7, label=name)
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=8, markerscale=2)
    return save_figure(fig, path)
