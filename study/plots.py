"""Plotting helpers that both training (one model's curves) and the report (the paper's
figures) use. Matplotlib only: no jax, no result files."""

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
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".partial.png")
    fig.savefig(tmp, dpi=110, metadata={"Software": None})
    plt.close(fig)
    tmp.rename(path)


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


def save_figure(fig, paper_dir: Path, name: str) -> list[Path]:
    """`<paper_dir>/figures/<name>.png` and `.pdf`, without timestamps (reproducible bytes)."""
    out = []
    for ext in ("png", "pdf"):
        p = Path(paper_dir) / "figures" / f"{name}.{ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.partial.{ext}")
        fig.savefig(tmp, dpi=130, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
        tmp.rename(p)
        out.append(p)
    plt.close(fig)
    return out
