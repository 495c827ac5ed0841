"""The paper's numbers (`paper_numbers.json`) and its text: every number read from the result
files, every word that depends on a number chosen here from it (STYLE.md rule 12)."""

from __future__ import annotations

from study.core import store
from study.core.context import Context
from study.core.names import parse
from study.stages.report.differences import effect_rows, few_shot_rows, multi_source_rows
from study.stages.report.prose import (
    abstract,
    discussion,
    f3,
    hands_text,
    main_findings,
    remedies_text,
    resolution_text,
    span,
    transfer_text,
)
from study.stages.report.results import cell_evals, kind
from study.stages.report.tables import (
    ablation_rows,
    effects_markdown,
    hand_share_markdown,
    in_domain_markdown,
    remedies_markdown,
    resolution_markdown,
    table_markdown,
)


def paper_numbers(info: dict, rows: list[dict], ctx: Context) -> dict:
    """The values the paper states beyond the table, derived from the result files."""
    prepared, preset = info["prepared"], info["preset"]
    main = [r for r in rows if kind(r) == "single"]
    in_domain = [r for r in main if r["eval_dataset"] == r["train_dataset"] and r["eval_res"] == r["train_res"]]
    cross = [
        r
        for r in main
        if r["eval_dataset"].split(":")[0] != r["train_dataset"]
        and r["eval_res"] == r["train_res"]
        and ":" not in r["eval_dataset"]
    ]
    degr = []
    for r in in_domain:
        low = min(
            (
                x
                for x in main
                if x["train_dataset"] == r["train_dataset"]
                and x["train_res"] == r["train_res"]
                and x["eval_dataset"] == r["eval_dataset"]
            ),
            key=lambda x: x["eval_res"],
        )
        degr.append(
            {
                "model": f"{r['train_dataset']}@{r['train_res']}",
                "r_low": low["eval_res"],
                "at_R": r["accuracy"],
                "at_r_low": low["accuracy"],
            }
        )
    weights = ctx.weights_record
    effects, family = effect_rows(rows, ctx, preset)
    return {
        "preset": preset.name,
        "config": preset.to_dict(),
        "in_domain": [
            {
                "model": f"{r['train_dataset']}@{r['train_res']}",
                "accuracy": r["accuracy"],
                "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]],
                "macro_f1": r["macro_f1"],
            }
            for r in in_domain
        ],
        "cross_domain": [
            {
                "model": f"{r['train_dataset']}@{r['train_res']}",
                "test": r["eval_dataset"],
                "accuracy": r["accuracy"],
                "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]],
                "chance": 1
                / len(
                    cell_evals(ctx, r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"])[0]["labels"]
                ),
            }
            for r in cross
        ],
        "degradation": degr,
        "ablation": ablation_rows(rows),
        "multi_source": multi_source_rows(rows, effects),
        "separability": [
            {
                "datasets": [x["dataset_a"], x["dataset_b"]],
                "R": x["R"],
                "accuracy": x["accuracy"],
                "ci": [x["accuracy_ci_low"], x["accuracy_ci_high"]],
            }
            for x in info["separability"]
            if x["r"] == x["R"]
        ],
        "few_shot": few_shot_rows(rows, effects),
        "effects": effects,
        "multiplicity": family,
        "datasets": {
            n: {s: v["images"] for s, v in d["splits"].items()} | {"left_out": d["left_out_by_guard_band"]["images"]}
            for n, d in prepared["datasets"].items()
        },
        "not_found": sorted(prepared.get("not_found", {})),
        "weights": {
            "source": weights["source"],
            "sha256": weights["source_sha256"],
            "parameters": weights["parameters"],
        },
        "hand_share": store.read_hand_share(ctx.results.hand_share),
        "cues": store.read_cues(ctx.results.cues),
        "hands": {
            n: {"rate": d["hands"]["rate"], "splits": {s: v["rate"] for s, v in d["hands"]["splits"].items()}}
            for n, d in prepared["datasets"].items()
            if "hands" in d
        },
        "hand_models": [
            {
                "model": f"{r['train_dataset']}@{r['train_res']}",
                "kind": kind(r),
                "test": r["eval_dataset"],
                "accuracy": r["accuracy"],
                "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]],
            }
            for r in rows
            if kind(r) in ("hand crop", "landmarks", "both views")
            and r["eval_res"] == r["train_res"]
            and ":" not in r["eval_dataset"]
        ],
    }


def hand_share_text(nums: dict) -> str:
    """The share of Grad-CAM's heat in the hand's box, per test set: the sentence and the table."""
    rows = [r for r in nums["hand_share"] if r["share"] is not None]
    if not rows:
        return "No sampled test image had a hand found by the detector, so no share of heat on the hand is measured."
    whole = [r for r in rows if parse(r["model"]).input != "crop"]
    crops = [r for r in rows if parse(r["model"]).input == "crop"]
    parts = []
    for e in dict.fromkeys(r["eval_dataset"] for r in whole):
        mine = [r for r in whole if r["eval_dataset"] == e]
        inside = [r for r in mine if r["domain"] == "in-domain"]
        across = [r for r in mine if r["domain"] == "cross-domain"]
        area = sum(r["box_area"] for r in mine) / len(mine)
        say = f"on {e}'s test images, whose hand boxes cover {area:.2f} of the image on average, "
        bits = [
            f"models trained on it put {span([r['share'] for r in inside])} of their heat there" if inside else "",
            f"models trained elsewhere {span([r['share'] for r in across])}" if across else "",
        ]
        parts.append(say + " and ".join(b for b in bits if b))
    rate = "; ".join(f"{n} {h['rate']:.3f}" for n, h in nums["hands"].items())
    text = (
        "The share of each heat map inside the hand's box (the square around the 21 landmarks MediaPipe's detector "
        f"finds, with a margin; a hand is found in a share of the images of {rate}), each cell's heat spread over its "
        "area: " + "; ".join(parts) + ". A map spread evenly would put the box's area there."
    )
    if crops:
        per = []
        for e in dict.fromkeys(r["eval_dataset"] for r in crops):
            mine = [r for r in crops if r["eval_dataset"] == e]
            per.append(
                f"on {e}'s crops {span([r['share'] for r in mine])} (the square covers "
                f"{span([r['box_area'] for r in mine])} of the crop)"
            )
        text += (
            "\n\nA hand-crop model sees the box already, so its share is measured in the tight square around the "
            "landmarks inside its crop: " + "; ".join(per) + "."
        )
    return text + " Per model and test set: appendix C."


def paper_text(info: dict, rows: list[dict], nums: dict, template: str) -> str:
    """The paper's Markdown: `template` with every number and table filled in from the results."""
    preset = info["preset"]
    prepared = info["prepared"]
    data = [
        "| dataset | archive files | train | validation | test | kaggle_test | left out by guard band |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, d in prepared["datasets"].items():
        sp = d["splits"]

        def g(s):
            return str(sp[s]["images"]) if s in sp else "–"

        data.append(
            f"| {n} | {d['archive']['files']} | {g('train')} | {g('validation')} | {g('test')} | {g('kaggle_test')} | "
            f"{d['left_out_by_guard_band']['images']} |"
        )
    dists = [
        f"{n}: {d['min_frame_distance']['test_to_train_or_validation']}"
        for n, d in prepared["datasets"].items()
        if d.get("min_frame_distance")
    ]
    if preset.name == "paper":
        scope = "This is the study of record, on the full Kaggle datasets."
    else:
        scope = (
            "**Scope.** These are the results of the `" + preset.name + "` preset on the data found on the machine "
            "that ran it (counts below), not the full datasets; the `paper` preset on the full Kaggle archives is "
            "the study of record."
            + (f" Not found, so not in this study: {', '.join(nums['not_found'])}." if nums["not_found"] else "")
        )
    kaggle = [
        r
        for r in rows
        if r["eval_dataset"].endswith(":kaggle_test")
        and r["eval_res"] == r["train_res"]
        and r["eval_dataset"].split(":")[0] == r["train_dataset"]
    ]
    abl = nums["ablation"]
    if abl:
        ablation = (
            "The same model, trained and scored on a random split of the same images (same split sizes, "
            "resolution and seeds), against the frame-block split: "
            + "; ".join(
                f"{a['dataset']}@{a['R']}: {f3(a['block'])} with frame blocks, {f3(a['random'])} at random "
                f"({a['inflation']:+.3f})"
                for a in abl
            )
            + ". A random split lets near-duplicate video frames "
            "into both training and test, which is how a published student version of this study reached its "
            "reported accuracy."
        )
    else:
        ablation = "Not run in this preset."
    limitations = (
        "One signer in `asl_alphabet`; the frame-block split removes near-duplicate frames but not the sameness "
        "of signer, room and light, so in-domain accuracy is still an optimistic measure of generalisation. "
        "Blocks 1-4 of the backbone are never trained; block 5 is fine-tuned only at "
        + (", ".join(f"R = {r}" for r in preset.block5.resolutions) or "no resolution")
        + ", and augmentation is applied only at "
        + (", ".join(f"R = {r}" for r in preset.augment.resolutions) if preset.augment.views else "no resolution")
        + ", to fit the preset's time budget. Labels missing from one dataset are not scored across datasets."
    )
    fam = nums["multiplicity"]
    if fam["family"]:
        limitations += (
            "\n\nThe " + f"{fam['family']} paired differences are weighed as one family: every verdict uses its "
            f"simultaneous {preset.eval.confidence:.0%} interval (the max-|t| bootstrap over the shared resamples, "
            f"critical value {fam['critical']:.2f} standard errors), which changes {fam['verdicts_changed']} of "
            "the verdicts that each difference's own interval would give; both intervals are in "
            f"`{store.name_of(store.Results, 'paper_numbers')}`. The intervals are over test images, not over "
            "recordings or signers."
        )
    a, b5 = preset.augment, preset.block5
    remedies_method = (
        f"- **Augmentation** (`<dataset>/aug{a.views}`, at R in {', '.join(map(str, a.resolutions))}): {a.views} "
        "augmented "
        f"views of every training image, drawn per image with dm-pix: a random resized crop (side {a.crop_scale[0]:g}-"
        f"{a.crop_scale[1]:g} of the image) turned by up to {a.max_rotation:g} degrees, brightness "
        f"(+-{a.brightness:g}), "
        f"contrast ({a.contrast[0]:g}-{a.contrast[1]:g}), saturation ({a.saturation[0]:g}-{a.saturation[1]:g}) and hue "
        f"(+-{a.hue:g}) jitter, grayscale (p = {a.grayscale:g}) and Gaussian blur (p = {a.blur:g}, sigma "
        f"{a.blur_sigma[0]:g}-{a.blur_sigma[1]:g} px); no horizontal flip, which swaps the signing hand. Each view's "
        "features are cached; each epoch shows every image once, as itself or one of its views.\n"
        f"- **Block 5 fine-tuned** (`<dataset>/ft5`, at R in {', '.join(map(str, b5.resolutions))}): VGG16's last "
        "block "
        f"and the head, starting from ImageNet and from the frozen baseline's head, trained together with AdamW "
        f"(learning rate {b5.learning_rate:g}, batch {b5.batch_size}, at most {b5.epochs} epochs, patience "
        f"{b5.patience}) on "
        "the block-4 maps cached in the features pass; scored from the features of its own block 5.\n"
        "- **Target data**: multi-source models train on the union of the datasets' training splits (shared labels); "
        f"few-shot models add k in {', '.join(map(str, preset.few_shot))} labelled images per letter of the target's "
        "training "
        "split to the source's, spread over the target's recording and drawn per seed.\n"
        + (
            "- **Adaptation without target labels** (`<source>+<method>(<target>)`, methods "
            f"{', '.join(preset.adapt.methods)}): "
            "heads trained on the source's labelled features and the target's unlabelled training features, never a "
            "target "
            "label: each domain's features standardised with its own statistics (std); the source's features given the "
            "target's mean and covariance (coral, CORAL); self-training on the source model's pseudo-labels of the "
            "target's "
            f"images with a probability of at least {preset.adapt.confidence:g}, {preset.adapt.rounds} rounds (self). "
            "Scored "
            "on the target.\n"
            if preset.adapt.methods
            else ""
        )
        + (
            f"- **Hand crops** (`<dataset>/hand`, at every R and r): each image cut to the square around the hand's "
            f"landmarks found by MediaPipe's hand detector, widened by {preset.hands.margin:g} of its side on every "
            "side and "
            "moved inside the image (the whole image where no hand was found), cut from the stored image and resized "
            "to R; "
            "trained and scored on the crops of the same splits.\n"
            if preset.hands.crops
            else ""
        )
        + (
            "- **The landmark classifier** (`<dataset>/landmarks`, R = 0: it sees no image at a model resolution): the "
            "head on the 21 landmarks (x, y, z) relative to the wrist, divided by the wrist's distance to the middle "
            "finger's knuckle and mirrored to a right hand where the detector says left; trained on the images where a "
            "hand was found; an image with no hand found is predicted `nothing` where the model has that label, and "
            "counts as wrong otherwise; with augmented views of the training hands (`<dataset>/landmarks/aug"
            f"{preset.hands.landmark_views}`: turned, stretched, sheared); and on both views, the crop's features and "
            "the "
            "landmarks side by side (`<dataset>/hand+landmarks`).\n"
            if preset.hands.landmarks
            else ""
        )
        + "- **Paired differences.** Each effect is the difference of two models' (or one model's at two test "
        "resolutions) "
        "mean accuracy on the same test images, with its interval over the table's bootstrap resamples and a "
        "simultaneous interval over every effect at once (the max-|t| bootstrap); verdicts (higher, lower, no clear "
        "difference) use the simultaneous one."
        if not preset.train.finetune
        else "- The image-level fine-tuning mode: block 5 and the head trained on images."
    )
    values = {
        "preset": preset.name,
        "scope": scope,
        "data_table": "\n".join(data),
        "max_blocks": preset.split.max_blocks,
        "fractions": "/".join(f"{x:g}" for x in preset.split.fractions),
        "guard": preset.split.guard_frames,
        "min_distances": ", ".join(dists) or "not applicable",
        "weights_source": nums["weights"]["source"],
        "weights_sha": nums["weights"]["sha256"][:16],
        "weights_params": f"{nums['weights']['parameters']:,}",
        "preprocessing": "torchvision",
        "head": {
            "mlp": "An MLP head (one hidden layer, ReLU, dropout)",
            "seed": "The original study's head (batch norm, two hidden layers)",
        }[preset.train.head],
        "confidence": f"{preset.eval.confidence * 100:g}",
        "lr": f"{preset.train.learning_rate:g}",
        "wd": f"{preset.train.weight_decay:g}",
        "batch": preset.train.batch_size,
        "epochs": preset.train.epochs,
        "patience": preset.train.patience,
        "seeds": ", ".join(map(str, preset.seeds)),
        "train_res": ", ".join(map(str, preset.train_resolutions)),
        "eval_res": ", ".join(map(str, preset.eval_resolutions)),
        "bootstrap": preset.eval.bootstrap,
        "comparison_table": table_markdown(rows, preset.eval.confidence, info["separability"]),
        "ablation": ablation,
        "abstract": abstract(nums),
        "findings": main_findings(nums),
        "table_a": in_domain_markdown(rows, nums).replace("(a) ", "**Table 1.** ", 1),
        "transfer": transfer_text(nums),
        "table_b": remedies_markdown(nums).replace("(b) ", "**Table 2.** ", 1)
        if nums["effects"]
        else "No remedies in this preset.",
        "table_c": resolution_markdown(rows).replace("(c) ", "**Table 3.** ", 1),
        "resolution": resolution_text(nums),
        "discussion": discussion(nums, kaggle),
        "limitations": limitations,
        "remedies": remedies_text(nums),
        "remedies_method": remedies_method,
        "effects_table": effects_markdown(nums["effects"]) if nums["effects"] else "No effects (one dataset).",
        "data_dir_hint": "../shared/data" if preset.name == "cpu" else "data",
        "hand_share": hand_share_text(nums),
        "hand_share_table": hand_share_markdown(nums["hand_share"])
        if nums["hand_share"]
        else "No heat maps in this preset.",
        "hands": hands_text(nums, preset),
    }
    return template.format_map(values)
