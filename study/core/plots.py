"""Plotting helpers that training (one model's curves), Grad-CAM and the report (the paper's
figures) use, and the one way a figure is saved: atomically, without timestamps (reproducible
bytes). Matplotlib only: no jax, no result files."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, side by side (one model)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    curves(axes, history)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save(fig, path, dpi=110)
    plt.close(fig)


def curves(axes, history: list[dict], alpha: float = 1.0, legend: bool = True) -> None:
    """Draw a history's loss (left axis) and accuracy (right axis), train and validation."""
    a, b = axes
    e = [h["epoch"] for h in history]
    a.plot(e, [h["train_loss"] for h in history], color="C0", alpha=alpha, label="train")
    a.plot(e, [h["val_loss"] for h in history], color="C1", alpha=alpha, label="validation")
    b.plot(e, [h["train_accuracy"] for h in history], color="C0", alpha=alpha, label="train")
    b.plot(e, [h["val_accuracy"] for h in history], color="C1", alpha=alpha, label="validation")
    a.set(xlabel="epoch", ylabel="cross-entropy loss")
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    b.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        if legend:
            ax.legend(fontsize=8)


def save(fig, path: Path, dpi: int, **kwargs) -> Path:
    """Save `fig` to `path` (PNG or PDF, by its suffix) through a temporary file and a rename,
    with no timestamp or software version in the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial{path.suffix}")
    metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
    fig.savefig(tmp, dpi=dpi, metadata=metadata, **kwargs)
    tmp.rename(path)
    return path


def save_figure(fig, folder: Path, name: str) -> list[Path]:
    """`<folder>/<name>.png` and `.pdf`, and close the figure."""
    out = [save(fig, Path(folder) / f"{name}.{ext}", dpi=130, bbox_inches="tight") for ext in ("png", "pdf")]
    plt.close(fig)
    return out
