"""Tables and figures from result files. Reads JSON and CSV; never imports jax."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, side by side."""
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(epochs, [h["train_loss"] for h in history], label="train")
    a.plot(epochs, [h["val_loss"] for h in history], label="validation")
    a.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    b.plot(epochs, [h["train_accuracy"] for h in history], label="train")
    b.plot(epochs, [h["val_accuracy"] for h in history], label="validation")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.rename(path)
