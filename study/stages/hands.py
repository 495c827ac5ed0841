"""The `hands` stage: MediaPipe's hand landmarks for every image of every prepared dataset.

One unit per prepared split (study.hands.landmarks), cached under <cache-dir>/hands and
resumable; all of the stage's units are announced to one Feed (study.datasets.pipeline),
whose worker processes (a worker per core unless --workers says otherwise; each runs the
detector on one core) take the units' chunks in turn. Each dataset's summary in
`datasets.json` gains `hands`: the detection rate per split and class, which try found the
hands, and every image where none was found (`prepare` keeps it while the dataset is the
same). `score` runs the same on a folder of photos (`run_folder`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from study.core import store
from study.core.context import Context
from study.core.errors import DatasetError
from study.core.files import held, provenance, write_json_atomic, write_json_unless_same
from study.core.labels import CANONICAL
from study.core.units import dataset_fingerprint
from study.datasets import DATASETS, open_builder, pipeline
from study.datasets.build import read_index
from study.hands import landmarks


def run_stage(ctx: Context) -> Context:
    """The `hands` command: every prepared dataset's landmarks; their summaries in datasets.json.
    Returns the context anew, so that the stages after it (in `all`) plan from the datasets.json
    that holds them (which datasets get landmark models: study.core.plan.Plan.with_hands)."""
    names = [n for n in ctx.preset.datasets if n in ctx.prepared["datasets"]]
    summaries = compute(ctx, names)
    path = ctx.results.datasets
    doc = ctx.written_by_prepare(path)
    for name in names:
        doc["datasets"][name]["hands"] = summaries[name]
    doc["provenance"] = provenance()  # the code that wrote the file last (kept if nothing changes)
    write_json_unless_same(path, doc)
    return dataclasses.replace(ctx)


def run_folder(ctx: Context) -> Context:
    """`score`: the landmarks of the folder being scored, in its dataset.json; the context
    that carries them."""
    name = ctx.scoring
    summary = compute(ctx, [name])[name]
    spec, dataset = ctx.folders[name]
    dataset = dataset | {"hands": summary}
    write_json_atomic(store.score_files(ctx, name).dataset, dataset)
    return ctx.with_folder(name, spec, dataset)


def _manual(ctx: Context, name: str) -> Path:
    if name in ctx.folders:
        return Path(ctx.folder)
    manual = DATASETS[name].manual_dir(ctx.data_dir)
    if manual is None:
        raise DatasetError(
            f"{name}: its archive is not in {ctx.data_dir} any more (expected "
            f"<data-dir>/{DATASETS[name].folder}/); the hands stage reads the original images"
        )
    return manual


def compute(ctx: Context, names: list[str]) -> dict[str, dict[str, Any]]:
    """The landmark units of the datasets `names` (computed where not done); their summaries."""
    cfg = ctx.preset.hands
    plan: dict[str, tuple[Any, dict]] = {}  # dataset -> (index, {split: Unit})
    for name in names:
        summary = ctx.prepared["datasets"][name]
        builder = open_builder(ctx, name)
        archive = builder.open_archive(_manual(ctx, name))
        try:
            if archive.fingerprint() != summary["archive"]["listing_sha256"]:
                raise DatasetError(
                    f"{name}: its archive changed since it was prepared; run "
                    f"`python -m study.run prepare --preset {ctx.preset.name}` again"
                )
            where = (str(archive.path), archive.prefix)
        finally:
            archive.close()
        index = read_index(builder)
        fp = dataset_fingerprint(summary)
        units = {
            split: landmarks.Unit(
                f"{name}/{split}",
                store.hand_files(ctx.cache_dir, fp, split),
                store.hands_spec(fp, split, cfg.tries),
                tuple(index[split]["file"]),
                where,
            )
            for split in summary["splits"]
        }
        plan[name] = (index, units)
    todo = [u for _, units in plan.values() for u in units.values() if not u.done(ctx.force)]
    if todo:
        workers = ctx.workers if ctx.workers is not None else (os.cpu_count() or 1)
        lock = store.hands_lock(ctx.cache_dir)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with held(lock, "the hand landmarks cache", ctx.echo):
            todo = [u for u in todo if not u.done(ctx.force)]  # another run may have made them
            jobs = {u.name: u.jobs(cfg.chunk, cfg.tries) for u in todo}
            with pipeline.Feed(list(jobs.values()), workers) as feed:
                for u in todo:
                    rec = landmarks.compute(u, jobs[u.name], feed.batches(jobs[u.name]), ctx.echo)
                    ctx.echo(
                        f"hands {u.name}: a hand in {rec['found']} of {rec['images']} images "
                        f"({rec['seconds']:.0f} s, {workers} worker{'s' if workers != 1 else ''})"
                    )
    out = {}
    for name, (index, units) in plan.items():
        per_split = {split: (store.hands_arrays(u.where), index[split]["label"], u.files) for split, u in units.items()}
        out[name] = landmarks.summarize(per_split, cfg.tries, list(CANONICAL))
        ctx.echo(landmarks.format_summary(name, out[name]))
    return out
