"""The paper's numbers (`paper_numbers.json`) and its text: every number read from the result
files, every word that depends on a number chosen here from it (STYLE.md rule 12)."""

from __future__ import annotations

from study.core import store
from study.core.context import Context
from study.core.names import parse
from study.stages.report.differences import effect_rows, few_shot_rows, multi_source_rows, verdict
from study.stages.report.results import cell_evals, kind
from study.stages.report.tables import ablation_rows, effects_markdown, hand_share_markdown, table_markdown


def _f(x: float) -> str:
    return f"{x:.3f}"


def paper_numbers(info: dict, rows: list[dict], ctx: Context) -> dict:
    """The values the paper states beyond the table, derived from the result files."""
    prepared, preset = info["prepared"], info["preset"]
    main = [r for r in rows if kind(r) == "single"]
    in_domain = [r for r in main if r["eval_dataset"] == r["train_dataset"] and r["eval_res"] == r["train_res"]]
    cross = [r for r in main if r["eval_dataset"].split(":")[0] != r["train_dataset"] and r["eval_res"] == r["train_res"]
             and ":" not in r["eval_dataset"]]
    degr = []
    for r in in_domain:
        low = min((x for x in main if x["train_dataset"] == r["train_dataset"] and x["train_res"] == r["train_res"]
                   and x["eval_dataset"] == r["eval_dataset"]), key=lambda x: x["eval_res"])
        degr.append({"model": f"{r['train_dataset']}@{r['train_res']}", "r_low": low["eval_res"],
                     "at_R": r["accuracy"], "at_r_low": low["accuracy"]})
    weights = ctx.weights_record
    return {
        "preset": preset.name,
        "config": preset.to_dict(),
        "in_domain": [{"model": f"{r['train_dataset']}@{r['train_res']}", "accuracy": r["accuracy"],
                       "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]], "macro_f1": r["macro_f1"]} for r in in_domain],
        "cross_domain": [{"model": f"{r['train_dataset']}@{r['train_res']}", "test": r["eval_dataset"], "accuracy": r["accuracy"],
                          "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]],
                          "chance": 1 / len(cell_evals(ctx, r["train_dataset"], r["train_res"], r["eval_dataset"], r["eval_res"])[0]["labels"])}
                         for r in cross],
        "degradation": degr,
        "ablation": ablation_rows(rows),
        "multi_source": multi_source_rows(rows, ctx, preset),
        "separability": [{"datasets": [x["dataset_a"], x["dataset_b"]], "R": x["R"], "accuracy": x["accuracy"],
                          "ci": [x["accuracy_ci_low"], x["accuracy_ci_high"]]}
                         for x in info["separability"] if x["r"] == x["R"]],
        "few_shot": few_shot_rows(rows, ctx, preset),
        "effects": effect_rows(rows, ctx, preset),
        "datasets": {n: {s: v["images"] for s, v in d["splits"].items()} | {"left_out": d["left_out_by_guard_band"]["images"]}
                     for n, d in prepared["datasets"].items()},
        "not_found": sorted(prepared.get("not_found", {})),
        "weights": {"source": weights["source"], "sha256": weights["source_sha256"], "parameters": weights["parameters"]},
        "hand_share": store.read_hand_share(ctx.out_dir / "gradcam" / "hand_share.csv"),
        "cues": store.read_cues(ctx.out_dir / "cues.csv"),
        "hands": {n: {"rate": d["hands"]["rate"], "splits": {s: v["rate"] for s, v in d["hands"]["splits"].items()}}
                  for n, d in prepared["datasets"].items() if "hands" in d},
        "hand_models": [{"model": f"{r['train_dataset']}@{r['train_res']}", "kind": kind(r), "test": r["eval_dataset"],
                         "accuracy": r["accuracy"], "ci": [r["accuracy_ci_low"], r["accuracy_ci_high"]]}
                        for r in rows if kind(r) in ("hand crop", "landmarks", "both views") and r["eval_res"] == r["train_res"]
                        and ":" not in r["eval_dataset"]],
    }



def _cues(cues: list[dict], sep: list[dict]) -> str:
    """What the trivial cues say: the outer frame of pixels alone, and the features without a border."""
    if not cues:
        return ""
    frame = [x for x in cues if x["check"] == "frame"]
    trimmed = [x for x in cues if x["check"] not in ("frame", "hand crop")]
    out = ""
    if frame:
        out += (" The outer one-pixel frame of the stored images alone tells them apart with "
                + "; ".join(f"{_f(x['accuracy'])} [{_f(x['accuracy_ci_low'])}, {_f(x['accuracy_ci_high'])}] "
                            f"({x['dataset_a']} vs {x['dataset_b']})" for x in frame) + ".")
    for x in trimmed:
        whole = next((s for s in sep if s["datasets"] == [x["dataset_a"], x["dataset_b"]] and s["R"] == x["R"]), None)
        lower = whole is not None and whole["accuracy"] > x["accuracy_ci_high"]
        out += (f" With a {x['check'].split()[1].split('-')[0]}-pixel border cut away, the features at R = {x['R']} still "
                f"tell {x['dataset_a']} from {x['dataset_b']} with {_f(x['accuracy'])} [{_f(x['accuracy_ci_low'])}, "
                f"{_f(x['accuracy_ci_high'])}]" + (f" (whole images {_f(whole['accuracy'])})" if whole else "")
                + (": the frame is not what separates them." if x["accuracy_ci_low"] > 0.9
                   else ": cutting the border lowers it, so the border carries part of what separates them." if lower else "."))
    return out


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
        bits = [f"models trained on it put {_span([r['share'] for r in inside])} of their heat there" if inside else "",
                f"models trained elsewhere {_span([r['share'] for r in across])}" if across else ""]
        parts.append(say + " and ".join(b for b in bits if b))
    rate = "; ".join(f"{n} {h['rate']:.3f}" for n, h in nums["hands"].items())
    text = ("The share of each heat map inside the hand's box (the square around the 21 landmarks MediaPipe's detector "
            f"finds, with a margin; a hand is found in a share of the images of {rate}), each cell's heat spread over its area: "
            + "; ".join(parts) + ". A map spread evenly would put the box's area there.")
    if crops:
        per = []
        for e in dict.fromkeys(r["eval_dataset"] for r in crops):
            mine = [r for r in crops if r["eval_dataset"] == e]
            per.append(f"on {e}'s crops {_span([r['share'] for r in mine])} (the square covers "
                       f"{_span([r['box_area'] for r in mine])} of the crop)")
        text += (" A hand-crop model sees the box already, so its share is measured in the tight square around the "
                 "landmarks inside its crop: " + "; ".join(per) + ".")
    return text + "\n\n" + hand_share_markdown(nums["hand_share"])


def hands_text(nums: dict, preset) -> str:
    """The hand section: hand-crop models, the landmark classifier (with augmented landmarks)
    and both views against the full-image frozen models, and the separability of the crops'
    features beside the whole images'."""
    if not nums["hand_models"]:
        return "Not run in this preset (no hand crops or landmark models)."
    ends = ("(hand crops)", "(landmark classifier)", "(augmented landmarks)", "(hand crops and landmarks)")
    fx = {e: [x for x in nums["effects"] if x["question"] == "remedy" and x["effect"].endswith(e)] for e in ends}
    rate = lambda d: nums["hands"].get(d, {}).get("splits", {}).get("test")
    found = "; ".join(f"{d} {rate(d):.3f}" for d in nums["hands"] if rate(d) is not None)
    parts = []
    if fx["(hand crops)"]:
        parts.append(f"**Hand crops.** Each image cut to the square around its hand's landmarks (widened by {preset.hands.margin:g} "
                     "of its side on every side, moved inside the image; an image with no hand found is used whole), resized "
                     "to R, through the same frozen backbone and a head trained on the training images' crops, against the "
                     "full-image model of the same dataset, R and seeds on the same test images, cropped: "
                     + "; ".join(_effect(x) for x in fx["(hand crops)"]) + ".")
    marks = [m for m in nums["hand_models"] if m["kind"] == "landmarks" and "/aug" not in m["model"]]
    if marks:
        parts.append("**The landmark classifier** (the peers' method): the same head on the 21 landmarks alone "
                     "(relative to the wrist, scaled by the palm's length, mirrored to a right hand), trained on the "
                     "training images where a hand was found; an image with no hand found is predicted `nothing` where "
                     f"the model has that label and counted wrong otherwise (a hand is found in a share of the test images of {found}). "
                     "Accuracy at the archive's resolution: "
                     + "; ".join(f"{m['model'].split('@')[0]} on {m['test']} {_f(m['accuracy'])} [{_f(m['ci'][0])}, {_f(m['ci'][1])}]"
                                 for m in marks)
                     + ". Against the full-image frozen models: " + "; ".join(_effect(x) for x in fx["(landmark classifier)"]) + ".")
    if fx["(augmented landmarks)"]:
        h = preset.hands
        parts.append(f"**Augmented landmarks.** {h.landmark_views} views of every training hand, turned by up to "
                     f"{h.landmark_rotation:g} degrees about the wrist, each axis stretched by {h.landmark_stretch[0]:g}-"
                     f"{h.landmark_stretch[1]:g} and sheared by up to {h.landmark_shear:g}, against the landmark model "
                     "without them: " + "; ".join(_effect(x) for x in fx["(augmented landmarks)"]) + ".")
    if fx["(hand crops and landmarks)"]:
        parts.append("**Both views** (the crop's features, the landmark vector and whether a hand was found, side by side), "
                     "against the full-image frozen model: " + "; ".join(_effect(x) for x in fx["(hand crops and landmarks)"]) + ".")
    crop_sep = [x for x in nums["cues"] if x["check"] == "hand crop"]
    if crop_sep:
        whole = {(tuple(x["datasets"]), x["R"]): x for x in nums["separability"]}

        def beside(x: dict) -> str:
            w = whole.get(((x["dataset_a"], x["dataset_b"]), x["R"]))
            return f" (whole images {_f(w['accuracy'])})" if w else ""

        parts.append("**Do the crops still tell the datasets apart?** A linear classifier on the frozen features of the "
                     "hand crops (balanced per letter, chance 0.5): " + "; ".join(
                         f"{x['dataset_a']} vs {x['dataset_b']} at R = {x['R']} {_f(x['accuracy'])} [{_f(x['accuracy_ci_low'])}, "
                         f"{_f(x['accuracy_ci_high'])}]{beside(x)}" for x in crop_sep)
                     + (": cutting away most of the room does not make the domains alike."
                        if all(x["accuracy_ci_low"] > 0.9 for x in crop_sep) else "."))
    return "\n\n".join(parts)


def _span(xs: list[float]) -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo:.2f}" if round(lo, 2) == round(hi, 2) else f"{lo:.2f}-{hi:.2f}"


def _effect(x: dict, accs: bool = True) -> str:
    """"asl_alphabet/aug4@64 vs asl_alphabet@64 on asl_photos (cross-domain): +0.031 [+0.012, +0.050], higher"."""
    lo, hi = x["ci"]
    tail = f" (from {_f(x['b'])} to {_f(x['a'])})" if accs and x["question"] != "remedy x test resolution" else ""
    return f"{x['effect']} on {x['test']} ({x['domain']}): {x['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]{tail}, {x['verdict']}"




def _difference(d: dict | None) -> str:
    """", difference +0.012 [-0.004, 0.028], no clear difference": the words follow the interval."""
    if d is None:
        return ""
    lo, hi = d["ci"]
    words = verdict(d["ci"]) + (" (the interval includes 0)" if lo <= 0 <= hi else "")
    return f", paired difference {d['gain']:+.3f} [{lo:+.3f}, {hi:+.3f}]: {words}"


def _remedies(nums: dict) -> str:
    """The remedies' paragraph: every number read from `nums` (paper_numbers.json)."""
    own = [x for x in nums["effects"] if x["question"] == "remedy"]
    if not nums["multi_source"] and not nums["few_shot"] and not own:
        return "Not run in this preset (it needs two datasets that share labels)."
    parts = []
    if own:
        parts.append("Each remedy against the frozen model it changes (the same dataset and R; a landmark model against "
                     "its dataset's model at each R; an adapted model against its source's, on the target), at r = R: " + "; ".join(_effect(x) for x in sorted(own, key=lambda x: x["effect"])) + ".")
    if nums["multi_source"]:
        parts.append("A head trained on the union of the datasets' training splits, against the head trained on one "
                     "dataset, each on that dataset's test split at r = R (a union is scored on the labels all its "
                     "sources have): " + "; ".join(
                         f"{x['model']} on {x['test']} {_f(x['accuracy'])} [{_f(x['ci'][0])}, {_f(x['ci'][1])}] "
                         f"(alone {_f(x['alone'])}{_difference(x['difference'])})" for x in nums["multi_source"]) + ".")
    if nums["few_shot"]:
        lines = []
        for x in nums["few_shot"]:
            steps = [f"{_f(x['k0'])} with none"] if x["k0"] is not None else []
            steps += [f"{_f(a)} with {k}" for k, a in x["shots"].items()]
            steps += [f"{_f(x['all'])} with all"] if x["all"] is not None else []
            ceiling = f" (a model trained on {x['target']} alone: {_f(x['target_alone'])})" if x["target_alone"] is not None else ""
            gain = (f"; {x['k_max']} per letter against none{_difference(x['gain_k_max'])}" if x["gain_k_max"] else "")
            lines.append(f"from {x['source']}@{x['R']} to {x['target']}: " + ", ".join(steps) + ceiling + gain)
        parts.append("Adding k labelled target images per letter to the source's training split, the target's test "
                     "accuracy (r = R) goes " + "; ".join(lines) + ".")
    return " ".join(parts)


def _discussion(nums: dict, kaggle: list[dict]) -> str:
    """The discussion: three questions, each answered from `nums` (paper_numbers.json), and
    the largest effects, whichever they are. Every word that depends on a number (fails or
    not, higher, lower, no clear difference, which effect is largest) is chosen here from it."""
    ind = {x["model"]: x for x in nums["in_domain"]}
    cro = nums["cross_domain"]
    fx = nums["effects"]
    parts = []
    # 1. Does the transfer fail, and how badly?
    if cro:
        ratios = [x["accuracy"] / ind[x["model"]]["accuracy"] for x in cro if ind.get(x["model"], {}).get("accuracy")]
        failed = all(x["ci"][1] < ind[x["model"]]["ci"][0] for x in cro if x["model"] in ind)
        verdict = ("Yes, in every direction measured: every cross-domain interval lies below the same model's in-domain "
                   "interval." if failed else "Not everywhere: some cross-domain intervals overlap the in-domain ones.")
        chance = "; ".join(f"{x['model']} on {x['test']} {_f(x['accuracy'])} [{_f(x['ci'][0])}, {_f(x['ci'][1])}] "
                           f"(chance {_f(x['chance'])})" for x in cro)
        text = (f"**Does the transfer fail, and how badly?** {verdict} In-domain at r = R: "
                + "; ".join(f"{k} {_f(v['accuracy'])}" for k, v in ind.items())
                + f". Across datasets at r = R: {chance}, that is {min(ratios):.0%} to {max(ratios):.0%} of the same "
                  "model's in-domain accuracy.")
        sep = nums["separability"]
        if sep:
            listed = "; ".join(f"{x['datasets'][0]} vs {x['datasets'][1]} {_f(x['accuracy'])} [{_f(x['ci'][0])}, "
                               f"{_f(x['ci'][1])}] at R = {x['R']}" for x in sep)
            lowest = min(x["ci"][0] for x in sep)
            best_cross = max(x["accuracy"] for x in cro)
            text += f" Why: a linear classifier on the frozen features tells the datasets' test images apart (balanced per letter, chance 0.5): {listed}."
            if lowest > best_cross:
                text += (f" Even the lowest bound of these ({_f(lowest)}) lies above the best cross-domain letter accuracy "
                         f"({_f(best_cross)}): the features say which dataset an image comes from far more reliably than "
                         "a letter classifier carries its letters from one dataset to the other.")
        text += _cues(nums["cues"], sep)
        hidden = ([f"on the {kaggle[0]['n']} official Kaggle test images, photographed with the training images, "
                   + " and ".join(f"{r['train_dataset']}@{r['train_res']} scores {_f(r['accuracy'])}" for r in kaggle)] if kaggle else [])
        hidden += [f"a random split of {a['dataset']}'s frames moves its in-domain accuracy at R = {a['R']} by "
                   f"{a['inflation']:+.3f}" for a in nums["ablation"]]
        if hidden:
            text += (" The single signer of asl_alphabet hides part of the failure even in-domain: " + "; ".join(hidden)
                     + ". Images from the recording a model was trained on say little about a new signer or room.")
        parts.append(text)
    # 2. What recovers it?
    no_target = [x for x in fx if x["question"] == "remedy" and x["domain"] == "cross-domain"]
    few = [x for x in fx if x["question"] == "target data" and "shot(" in x["effect"]]
    with_target = [x for x in fx if x["question"] == "target data" and x["target_images"]]
    costs = [x for x in fx if x["question"] == "target data" and x["domain"] == "in-domain"]
    text = "**What recovers it?**"
    if no_target:
        best = max(no_target, key=lambda x: x["difference"])
        helped = [x for x in no_target if x["verdict"] == "higher"]
        text += (" Without target labels (an adapted model sees the target's unlabelled training images, the other "
                 "remedies nothing of it), against the frozen baseline: "
                 + "; ".join(_effect(x) for x in sorted(no_target, key=lambda x: -x["difference"]))
                 + f". {len(helped)} of these {len(no_target)} cross-domain differences are clearly above zero; the largest "
                 f"is {best['effect']} on {best['test']} ({best['difference']:+.3f}).")
        in_dom = [x for x in fx if x["question"] == "remedy" and x["domain"] == "in-domain"]
        if in_dom:
            text += " In-domain the same remedies give " + "; ".join(_effect(x, False) for x in in_dom) + "."
    if with_target:
        best = max(with_target, key=lambda x: x["difference"])
        top = max(no_target, key=lambda x: x["difference"])["difference"] if no_target else None
        text += (" With labelled target images: " + "; ".join(_effect(x) for x in few) + f". The largest gain is {best['effect']} "
                 f"on {best['test']} ({best['difference']:+.3f})")
        text += (": labelled photos of the new domain, even a few per letter, recover far more than any remedy "
                 "without target labels." if top is not None and min(x["difference"] for x in few or [best]) > top
                 else ".")
    if costs:
        text += " Training on the union costs the sources' own test sets: " + "; ".join(_effect(x, False) for x in costs) + "."
    if not (no_target or with_target):
        text += " Not run in this preset."
    parts.append(text)
    # 3. What does downsizing the pixels do?
    text = "**What does downsizing the pixels do?**"
    train_res = [x for x in fx if x["question"] == "training resolution"]
    if train_res:
        text += " Training at the higher resolution R: " + "; ".join(_effect(x, False) for x in train_res) + "."
    test_res = [x for x in fx if x["question"] == "test resolution"]
    if test_res:
        ind_drop = [x for x in test_res if x["domain"] == "in-domain"]
        better = [x for x in test_res if x["domain"] == "cross-domain" and x["verdict"] == "higher"]
        if ind_drop:
            worst = min(ind_drop, key=lambda x: x["difference"])
            text += (f" Lowering the test resolution costs in-domain accuracy up to {-worst['difference']:.3f} "
                     f"({worst['effect']} on {worst['test']}).")
        if better:
            text += (f" Across datasets, a lower test resolution transfers *better* in {len(better)} of "
                     f"{sum(x['domain'] == 'cross-domain' for x in test_res)} cases: "
                     + "; ".join(_effect(x) for x in better[:6]) + (" (the rest in the ranked table)" if len(better) > 6 else "")
                     + ". Removing detail removes part of what ties a model to its own dataset's images.")
        else:
            text += " Across datasets, no lower test resolution transfers clearly better than r = R."
    inter = [x for x in fx if x["question"] == "remedy x test resolution"]
    if inter:
        changed = [x for x in inter if x["verdict"] != "no clear difference"]
        text += (" The remedies " + (f"change the effect of the lowest test resolution in {len(changed)} of {len(inter)} cases"
                                     if changed else "do not clearly change the effect of the lowest test resolution")
                 + " (positive: the remedy loses less, or gains more, at low r than its baseline): "
                 + "; ".join(_effect(x, False) for x in inter) + ".")
    parts.append(text)
    clear = [x for x in fx if x["verdict"] != "no clear difference"]
    if clear:
        parts.append(f"**The largest effects**, by size among the {len(clear)} of {len(fx)} whose interval excludes zero "
                     "(all are in the ranked table below and in `paper_numbers.json`): "
                     + "; ".join(f"({i}) {_effect(x)}" for i, x in enumerate(clear[:5], 1)) + ".")
    return "\n\n".join(parts)


def paper_text(info: dict, rows: list[dict], nums: dict, template: str) -> str:
    preset = info["preset"]
    prepared = info["prepared"]
    data = ["| dataset | archive files | train | validation | test | kaggle_test | left out by guard band |", "|---|---|---|---|---|---|---|"]
    for n, d in prepared["datasets"].items():
        sp = d["splits"]
        g = lambda s: str(sp[s]["images"]) if s in sp else "–"
        data.append(f"| {n} | {d['archive']['files']} | {g('train')} | {g('validation')} | {g('test')} | {g('kaggle_test')} | "
                    f"{d['left_out_by_guard_band']['images']} |")
    dists = [f"{n}: {d['min_frame_distance']['test_to_train_or_validation']}" for n, d in prepared["datasets"].items()
             if d.get("min_frame_distance")]
    if preset.name == "paper":
        scope = "This is the study of record, on the full Kaggle datasets."
    else:
        scope = ("**Scope.** These are the results of the `" + preset.name + "` preset on the data found on the machine "
                 "that ran it (counts below), not the full datasets; the `paper` preset on the full Kaggle archives is "
                 "the study of record." + (f" Not found, so not in this study: {', '.join(nums['not_found'])}." if nums["not_found"] else ""))
    kaggle = [r for r in rows if r["eval_dataset"].endswith(":kaggle_test") and r["eval_res"] == r["train_res"]
              and r["eval_dataset"].split(":")[0] == r["train_dataset"]]
    discussion = _discussion(nums, kaggle)
    abl = nums["ablation"]
    if abl:
        ablation = ("The same model, trained and scored on a random split of the same images (same split sizes, "
                    "resolution and seeds), against the frame-block split: " + "; ".join(
                        f"{a['dataset']}@{a['R']}: {_f(a['block'])} with frame blocks, {_f(a['random'])} at random "
                        f"({a['inflation']:+.3f})" for a in abl) + ". A random split lets near-duplicate video frames "
                    "into both training and test, which is how a published student version of this study reached its "
                    "reported accuracy.")
    else:
        ablation = "Not run in this preset."
    limitations = ("One signer in `asl_alphabet`; the frame-block split removes near-duplicate frames but not the sameness "
                   "of signer, room and light, so in-domain accuracy is still an optimistic measure of generalisation. "
                   "Blocks 1-4 of the backbone are never trained; block 5 is fine-tuned only at "
                   + (", ".join(f"R = {r}" for r in preset.block5.resolutions) or "no resolution")
                   + ", and augmentation is applied only at "
                   + (", ".join(f"R = {r}" for r in preset.augment.resolutions) if preset.augment.views else "no resolution")
                   + ", to fit the preset's time budget. The effects are many comparisons on the same test images; their "
                   "intervals are not corrected for multiplicity, so a single interval just excluding zero is weak evidence. "
                   "Labels missing from one dataset are not scored across datasets.")
    a, b5 = preset.augment, preset.block5
    remedies_method = (
        f"- **Augmentation** (`<dataset>/aug{a.views}`, at R in {', '.join(map(str, a.resolutions))}): {a.views} augmented "
        f"views of every training image, drawn per image with dm-pix: a random resized crop (side {a.crop_scale[0]:g}-"
        f"{a.crop_scale[1]:g} of the image) turned by up to {a.max_rotation:g} degrees, brightness (+-{a.brightness:g}), "
        f"contrast ({a.contrast[0]:g}-{a.contrast[1]:g}), saturation ({a.saturation[0]:g}-{a.saturation[1]:g}) and hue "
        f"(+-{a.hue:g}) jitter, grayscale (p = {a.grayscale:g}) and Gaussian blur (p = {a.blur:g}, sigma "
        f"{a.blur_sigma[0]:g}-{a.blur_sigma[1]:g} px); no horizontal flip, which swaps the signing hand. Each view's "
        "features are cached; each epoch shows every image once, as itself or one of its views.\n"
        f"- **Block 5 fine-tuned** (`<dataset>/ft5`, at R in {', '.join(map(str, b5.resolutions))}): VGG16's last block "
        f"and the head, starting from ImageNet and from the frozen baseline's head, trained together with AdamW "
        f"(learning rate {b5.learning_rate:g}, batch {b5.batch_size}, at most {b5.epochs} epochs, patience {b5.patience}) on "
        "the block-4 maps cached in the features pass; scored from the features of its own block 5.\n"
        "- **Target data**: multi-source models train on the union of the datasets' training splits (shared labels); "
        f"few-shot models add k in {', '.join(map(str, preset.few_shot))} labelled images per letter of the target's training "
        "split to the source's, spread over the target's recording and drawn per seed.\n"
        + (f"- **Adaptation without target labels** (`<source>+<method>(<target>)`, methods {', '.join(preset.adapt.methods)}): "
           "heads trained on the source's labelled features and the target's unlabelled training features, never a target "
           "label: each domain's features standardised with its own statistics (std); the source's features given the "
           "target's mean and covariance (coral, CORAL); self-training on the source model's pseudo-labels of the target's "
           f"images with a probability of at least {preset.adapt.confidence:g}, {preset.adapt.rounds} rounds (self). Scored "
           "on the target.\n" if preset.adapt.methods else "")
        + (f"- **Hand crops** (`<dataset>/hand`, at every R and r): each image cut to the square around the hand's "
           f"landmarks found by MediaPipe's hand detector, widened by {preset.hands.margin:g} of its side on every side and "
           "moved inside the image (the whole image where no hand was found), cut from the stored image and resized to R; "
           "trained and scored on the crops of the same splits.\n" if preset.hands.crops else "")
        + ("- **The landmark classifier** (`<dataset>/landmarks`, R = 0: it sees no image at a model resolution): the "
           "head on the 21 landmarks (x, y, z) relative to the wrist, divided by the wrist's distance to the middle "
           "finger's knuckle and mirrored to a right hand where the detector says left; trained on the images where a "
           "hand was found; an image with no hand found is predicted `nothing` where the model has that label, and "
           "counts as wrong otherwise; with augmented views of the training hands (`<dataset>/landmarks/aug"
           f"{preset.hands.landmark_views}`: turned, stretched, sheared); and on both views, the crop's features and the "
           "landmarks side by side (`<dataset>/hand+landmarks`).\n" if preset.hands.landmarks else "")
        + "- **Paired differences.** Each effect is the difference of two models' (or one model's at two test resolutions) "
        "mean accuracy on the same test images, with its interval over the table's bootstrap resamples."
        if not preset.train.finetune else "- The image-level fine-tuning mode: block 5 and the head trained on images.")
    values = {
        "preset": preset.name, "scope": scope, "data_table": "\n".join(data),
        "max_blocks": preset.split.max_blocks, "fractions": "/".join(f"{x:g}" for x in preset.split.fractions),
        "guard": preset.split.guard_frames, "min_distances": ", ".join(dists) or "not applicable",
        "weights_source": nums["weights"]["source"], "weights_sha": nums["weights"]["sha256"][:16],
        "weights_params": f"{nums['weights']['parameters']:,}", "preprocessing": "torchvision",
        "head": {"mlp": "An MLP head (one hidden layer, ReLU, dropout)",
                 "seed": "The original study's head (batch norm, two hidden layers)"}[preset.train.head],
        "confidence": f"{preset.eval.confidence * 100:g}",
        "lr": f"{preset.train.learning_rate:g}", "wd": f"{preset.train.weight_decay:g}", "batch": preset.train.batch_size,
        "epochs": preset.train.epochs, "patience": preset.train.patience, "seeds": ", ".join(map(str, preset.seeds)),
        "train_res": ", ".join(map(str, preset.train_resolutions)), "eval_res": ", ".join(map(str, preset.eval_resolutions)),
        "bootstrap": preset.eval.bootstrap, "comparison_table": table_markdown(rows, preset.eval.confidence, info["separability"]), "ablation": ablation,
        "discussion": discussion, "limitations": limitations, "remedies": _remedies(nums),
        "remedies_method": remedies_method, "effects_table": effects_markdown(nums["effects"]) if nums["effects"] else "No effects (one dataset).",
        "data_dir_hint": "../shared/data" if preset.name == "cpu" else "data",
        "hand_share": hand_share_text(nums),
        "hands": hands_text(nums, preset),
    }
    return template.format_map(values)
