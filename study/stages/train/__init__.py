"""`train`: models trained with optax: heads on cached features, block 5 on cached block-4 maps.

One unit per (model name, resolution R, seed) (names: study.core.names). The recipe, with its
seeded epochs, early stopping, checkpoints every epoch and exact resume, is study.training.fit's;
the seeds of a head train together in one compiled program (study.training.group).
The parts: what each kind of model depends on (`specs`), the rows its head learns from
(`rows`), how each kind is trained and the table of kinds (`kinds`); this module runs them and
saves each model. Inputs are read, and outputs located, through study.core.store; the loss and
accuracy curves of each model are drawn by the report, from the history saved here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time

from study.core import store
from study.core.context import Context
from study.core.files import write_json_atomic
from study.core.units import is_done, mark_done
from study.network.model import head_arrays
from study.stages.train.kinds import KINDS, kind, title, unit_spec
from study.training.fit import save_npz

__all__ = ["run_stage", "unit_spec"]


def run_stage(ctx: Context) -> None:
    """Train every model of the plan that is not done (or whose files are damaged): the seeds of
    a model that are to be trained, together where its kind allows (KINDS)."""
    for name in ctx.plan.skipped:
        ctx.echo(f"{name}: skipped, its datasets share no label")
    groups: dict[tuple[str, int], list[int]] = {}
    for dataset, R, seed in ctx.plan.model_seeds:
        groups.setdefault((dataset, R), []).append(seed)
    for (dataset, R), all_seeds in groups.items():  # in the plan's order: a model's inputs are trained before it
        members = []
        for seed in all_seeds:
            files = store.model_files(ctx, dataset, R, seed)
            spec = unit_spec(ctx, dataset, R, seed)
            if is_done(files.marker, spec, force=ctx.force):
                continue
            if files.marker.exists():  # stale (with --force) or damaged: start over
                shutil.rmtree(files.root)
            files.root.mkdir(parents=True, exist_ok=True)
            members.append((seed, spec))
        if not members:
            continue
        seeds = [seed for seed, _ in members]
        identity = hashlib.sha256(json.dumps([spec for _, spec in members], sort_keys=True).encode()).hexdigest()
        t0 = time.perf_counter()
        trained = KINDS[kind(ctx, dataset)][1](ctx, dataset, R, seeds, identity)
        seconds = round(time.perf_counter() - t0, 2)
        for (seed, spec), (model, block5, history) in zip(members, trained):
            _save(ctx, dataset, R, seed, spec, model, block5, history, seconds, seeds)
        for seed in seeds:
            store.model_files(ctx, dataset, R, seed).checkpoint.unlink(missing_ok=True)
        for ckpt in store.model_files(ctx, dataset, R, seeds[0]).group_checkpoints():
            ckpt.unlink()


def _save(
    ctx: Context,
    dataset: str,
    R: int,
    seed: int,
    spec: dict,
    model,
    block5,
    history: list[dict],
    seconds: float,
    trained_with: list[int],
) -> None:
    """A trained model's files and its marker."""
    files = store.model_files(ctx, dataset, R, seed)
    name = title(dataset, R, seed)
    extra = {}
    if block5 is not None:  # a fine-tuned block 5 is saved beside the head; the backbone is named by its sha256
        from study.network import weights

        layers = block5.arrays()
        save_npz(files.block5, {f"{p}_{i}": a for i, ka in layers.items() for p, a in zip(("kernel", "bias"), ka)})
        tuned = weights.with_layers(weights.prepared(ctx), layers, f"block 5 fine-tuned ({dataset}@{R} seed {seed})")
        extra["backbone_sha256"] = tuned.sha256()
    save_npz(files.head, head_arrays(model))
    best = min(history, key=lambda h: h["val_loss"])
    write_json_atomic(files.history, {"model": name, "history": history, "best_epoch": best["epoch"]})
    made = [files.head, files.history] + ([files.block5] if block5 is not None else [])
    made += [f for f in (files.draw, files.pseudo) if f.is_file()]
    mark_done(
        files.marker,
        spec,
        made,
        epochs=len(history),
        best_epoch=best["epoch"],
        val_accuracy=best["val_accuracy"],
        seconds=seconds,
        trained_with_seeds=trained_with,
        **extra,
    )
    ctx.echo(
        f"trained {name}: {len(history)} epochs, best {best['epoch']} (validation accuracy {best['val_accuracy']:.3f})"
    )
