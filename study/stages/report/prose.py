"""The paper's prose: the abstract, the main findings, each result's short paragraph and the
discussion, every number read from `nums` (paper_numbers.json) and every word that depends on
a number chosen here from it (STYLE.md rule 12). Paragraphs stay under `MAX_WORDS` and no
sentence lists more than `MAX_COMPARISONS` paired differences (tests/test_paper.py); the
tables and the appendix hold the rest."""

from __future__ import annotations

from study.core.names import parse
from study.stages.report.differences import expected

MAX_WORDS = 150  # a paragraph, outside tables
MAX_ABSTRACT_WORDS = 200
MAX_COMPARISONS = 3  # paired differences a sentence may list


def f3(x: float) -> str:
    """`x` with three decimals."""
    return f"{x:.3f}"


def span(xs: list[float]) -> str:
    """ "0.10-0.15", or one number where they round alike."""
    lo, hi = min(xs), max(xs)
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"


def diff(x: dict) -> str:
    """A paired difference with its simultaneous interval: "+0.031 [+0.012, +0.050]"."""
    lo, hi = x["ci_family"]
    return f"{x['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def what(x: dict) -> str:
    """An effect's model and its test set: "asl_alphabet/hand@64 on asl_photos"."""
    return f"{x['effect'].split(' vs ')[0].split(' tested at')[0]} on {x['test']}"


def _cross_remedies(fx: list[dict]) -> list[dict]:
    return [x for x in fx if x["question"] == "remedy" and x["domain"] == "cross-domain"]


def _few(fx: list[dict]) -> list[dict]:
    return [x for x in fx if x["question"] == "target data" and "shot(" in x["effect"]]


def _lower_r(fx: list[dict]) -> list[dict]:
    return [x for x in fx if x["question"] == "test resolution" and x["domain"] == "cross-domain"]


def _landmarks(nums: dict) -> list[dict]:
    """The plain landmark models' accuracy on the other datasets' test splits."""
    return [
        m
        for m in nums["hand_models"]
        if m["kind"] == "landmarks"
        and "/aug" not in m["model"]
        and m["test"] != parse(m["model"].split("@")[0]).sources[0]
    ]


def _heat(nums: dict) -> tuple[list[float], list[float]]:
    """Grad-CAM's share of heat in the hand's box, full-image models, and the boxes' share of the image."""
    rows = [r for r in nums["hand_share"] if r["share"] is not None and parse(r["model"]).input != "crop"]
    return [r["share"] for r in rows], [r["box_area"] for r in rows]


def _and(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def little(nums: dict) -> bool:
    """Whether the remedies without target labels recover little: the largest cross-domain gain
    is below half the mean gap between in-domain and cross-domain accuracy."""
    rem, cro = _cross_remedies(nums["effects"]), nums["cross_domain"]
    if not rem or not cro:
        return True
    gap = sum(x["accuracy"] for x in nums["in_domain"]) / len(nums["in_domain"]) - sum(
        x["accuracy"] for x in cro
    ) / len(cro)
    return max(x["difference"] for x in rem) < gap / 2


def signed_span(xs: list[float]) -> str:
    """ "from -0.08 to -0.02", or one signed number where they round alike."""
    lo, hi = min(xs), max(xs)
    return f"{lo:+.2f}" if f"{lo:+.2f}" == f"{hi:+.2f}" else f"from {lo:+.2f} to {hi:+.2f}"


def against(few: dict, rem: list[dict]) -> str:
    """How the largest few-shot gain compares with the largest remedy without target labels,
    by their simultaneous intervals: "more than", "about as much as" or "less than"."""
    if not rem:
        return "more than"
    best = max(rem, key=lambda x: x["difference"])
    if few["ci_family"][0] > best["ci_family"][1]:
        return "more than"
    return "less than" if few["ci_family"][1] < best["ci_family"][0] else "about as much as"


def _few_shot_gain(fx: list[dict]) -> tuple[dict, str] | None:
    """The largest few-shot gain and the sentence that weighs it against the best remedy without
    target labels ("Labelled target images recover more than the best remedy without them");
    None where the preset has no few-shot models."""
    few = _few(fx)
    if not few:
        return None
    best = max(few, key=lambda x: x["difference"])
    return best, f"Labelled target images recover {against(best, _cross_remedies(fx))} the best remedy without them"


def count(n: int, one: str, many: str | None = None) -> str:
    """`n` and the noun, singular for 1, else `many` (default: `one` + 's')."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def abstract(nums: dict) -> str:
    """At most MAX_ABSTRACT_WORDS: the question, the data, the collapse, the best remedy without
    target labels, what a few target images buy, what resolution does, what the hands show."""
    ds = nums["datasets"]
    data = _and([f"{n} ({sum(v for k, v in s.items() if k != 'left_out'):,} images)" for n, s in ds.items()])
    out = [
        f"Does an ImageNet-pretrained VGG16 with a trained head, trained on one ASL fingerspelling dataset, recognise "
        f"the letters of another? We train on {data}, split by blocks of video frames so that near-copies of test "
        "frames stay out of training."
    ]
    ind, cro = nums["in_domain"], nums["cross_domain"]
    if cro:
        out.append(
            f"Frozen-feature models reach {span([x['accuracy'] for x in ind])} on their own dataset's held-out test "
            f"images but {span([x['accuracy'] for x in cro])} on the other's (chance "
            f"{max(x['chance'] for x in cro):.2f}), in both directions."
        )
    else:
        out.append(
            f"Frozen-feature models reach {span([x['accuracy'] for x in ind])} on their own dataset's held-out test "
            "images."
        )
    if nums["separability"]:
        out.append(
            f"A linear probe tells the datasets apart from the same features with accuracy "
            f"{span([x['accuracy'] for x in nums['separability']])}."
        )
    fx, fam = nums["effects"], nums["multiplicity"]
    rem = _cross_remedies(fx)
    if rem:
        best = max(rem, key=lambda x: x["difference"])
        clear = [x for x in rem if x["verdict"] == "higher"]
        names = {
            "augmented": "augmentation",
            "fine-tuned": "fine-tuning block 5",
            "hand crop": "hand crops",
            "landmarks": "landmarks",
            "both views": "crops with landmarks",
            "adapted": "adaptation",
        }
        present = {parse(x["pair"][0][0]).kind for x in rem}
        kinds = _and([v for k, v in names.items() if k in present])
        out.append(
            f"Of {count(len(rem), 'cross-domain comparison')} of a remedy without target labels with its "
            f"baseline ({kinds}), {len(clear)} clearly favour the remedy after "
            f"correcting for all {fam['family']} comparisons; the largest gain is {diff(best)} ({what(best)})."
        )
    few = nums["few_shot"]
    if few:
        k = max(x["k_max"] for x in few)
        out.append(
            f"{k} labelled target images per letter raise cross-domain accuracy to "
            f"{span([x['shots'][str(k)] for x in few if str(k) in x['shots']])}."
        )
    low = _lower_r(fx)
    if low:
        better = [x for x in low if x["verdict"] == "higher"]
        out.append(
            f"A lower test resolution transfers clearly better in {len(better)} of {len(low)} cross-domain cases."
        )
    marks = _landmarks(nums)
    share, area = _heat(nums)
    if marks or share:
        bits = []
        if marks:
            bits.append(
                f"a landmark classifier, the peers' method, reaches {span([m['accuracy'] for m in marks])} "
                "across datasets"
            )
        if share:
            bits.append(
                f"Grad-CAM puts {span(share)} of its heat inside the hand's box (which covers {span(area)} of the "
                "image)"
            )
        out.append("On the hands: " + "; ".join(bits) + ".")
    return " ".join(out)


def main_findings(nums: dict) -> str:
    """The main findings, one bullet each, read from `nums`."""
    fx = nums["effects"]
    ind, cro = nums["in_domain"], nums["cross_domain"]
    out = []
    if cro:
        byid = {x["model"]: x for x in ind}
        ratios = [x["accuracy"] / byid[x["model"]]["accuracy"] for x in cro if byid.get(x["model"], {}).get("accuracy")]
        failed = all(x["ci"][1] < byid[x["model"]]["ci"][0] for x in cro if x["model"] in byid)
        out.append(
            ("**The transfer fails.** " if failed else "**The transfer fails in part.** ")
            + f"Across datasets the frozen models keep {min(ratios):.0%}-{max(ratios):.0%} of their in-domain accuracy "
            "(Table 1)."
        )
    if nums["separability"]:
        frame = [x for x in nums["cues"] if x["check"] == "frame"]
        out.append(
            f"**The features know the dataset.** A linear probe separates the datasets' test images with "
            f"{span([x['accuracy'] for x in nums['separability']])}"
            + (
                f"; the one-pixel outer frame alone does so with {span([x['accuracy'] for x in frame])}"
                if frame
                else ""
            )
            + "."
        )
    rem = _cross_remedies(fx)
    if rem:
        clear = [x for x in rem if x["verdict"] == "higher"]
        best = max(rem, key=lambda x: x["difference"])
        out.append(
            (
                "**Without target labels little is recovered.** "
                if little(nums)
                else "**Some remedies without target labels recover much of it.** "
            )
            + f"{len(clear)} of {len(rem)} cross-domain comparisons clearly favour the remedy; "
            f"the largest is {what(best)}, {diff(best)} (Table 2)."
        )
    few = _few_shot_gain(fx)
    if few:
        best, recover = few
        out.append(f"**{recover}.** The largest few-shot gain is {diff(best)} ({what(best)}; Figure 3).")
    low = _lower_r(fx)
    if low:
        better = [x for x in low if x["verdict"] == "higher"]
        worse = [x for x in low if x["verdict"] == "lower"]
        out.append(
            ("**Fewer pixels can transfer better.** " if better else "**Fewer pixels do not transfer better.** ")
            + "Across datasets a lower test resolution is clearly better in "
            f"{len(better)} and clearly worse in {len(worse)} of {len(low)} cases (Table 3)."
        )
    marks = _landmarks(nums)
    share, area = _heat(nums)
    if marks or share:
        bits = []
        if marks:
            bits.append(f"Landmark classifiers score {span([m['accuracy'] for m in marks])} across datasets")
        if share:
            bits.append(
                f"{'f' if marks else 'F'}ull-image models put {span(share)} of their Grad-CAM heat on the hand's box "
                f"({span(area)} of the image)"
            )
        out.append("**The hand.** " + "; ".join(bits) + ".")
    return "\n".join(f"- {x}" for x in out)


def transfer_text(nums: dict) -> str:
    """The first result: in-domain against cross-domain (Table 1), and why."""
    ind, cro = nums["in_domain"], nums["cross_domain"]
    out = [f"In-domain at r = R the frozen models reach {span([x['accuracy'] for x in ind])} (Table 1)."]
    if cro:
        out.append(
            "On the other dataset's test images (shared letters only) they reach "
            f"{span([x['accuracy'] for x in cro])}, "
            f"against chance {max(x['chance'] for x in cro):.2f}; Figure 1 shows every model and test set."
        )
    sep = nums["separability"]
    if sep:
        out.append(
            f"A linear classifier on the frozen features tells the two datasets' test images apart (balanced per "
            f"letter, chance 0.5) with {span([x['accuracy'] for x in sep])} at r = R (the full table, appendix A)."
        )
    out.append(_cues(nums))
    return " ".join(x for x in out if x)


def _cues(nums: dict) -> str:
    """What the trivial cues say: the outer frame of pixels alone, and the features without a border."""
    frame = [x for x in nums["cues"] if x["check"] == "frame"]
    trimmed = [x for x in nums["cues"] if x["check"] not in ("frame", "hand crop")]
    out = []
    if frame:
        out.append(
            f"The outer one-pixel frame of the stored images alone tells them apart with "
            f"{span([x['accuracy'] for x in frame])}."
        )
    if trimmed:
        keeps = all(x["accuracy_ci_low"] > 0.9 for x in trimmed)
        out.append(
            f"With a {trimmed[0]['check'].split()[1].split('-')[0]}-pixel border cut away the features still tell them "
            f"apart with {span([x['accuracy'] for x in trimmed])}"
            + (": the frame is not what separates them." if keeps else ".")
        )
    return " ".join(out)


def remedies_text(nums: dict) -> str:
    """The remedies' paragraph: what Table 2 shows, in counts and the largest effect."""
    fx = nums["effects"]
    own = [x for x in fx if x["question"] == "remedy"]
    if not own and not nums["few_shot"] and not nums["multi_source"]:
        return "Not run in this preset (it needs two datasets that share labels)."
    out = []
    rem = _cross_remedies(fx)
    if rem:
        up = [x for x in rem if x["verdict"] == "higher"]
        down = [x for x in rem if x["verdict"] == "lower"]
        best = max(rem, key=lambda x: x["difference"])
        out.append(
            f"Table 2 gives each remedy's paired difference from its frozen baseline. Across datasets, "
            f"{len(up)} of {len(rem)} comparisons of a remedy without target labels are clearly higher and {len(down)} "
            "clearly lower; "
            f"the largest is {what(best)}, {diff(best)}."
        )
    ind = [x for x in own if x["domain"] == "in-domain"]
    if ind:
        best = max(ind, key=lambda x: x["difference"])
        worst = min(ind, key=lambda x: x["difference"])
        out.append(f"In-domain the remedies range from {diff(worst)} ({what(worst)}) to {diff(best)} ({what(best)}).")
    few = _few_shot_gain(fx)
    if few:
        best, recover = few
        ceiling = [x["target_alone"] for x in nums["few_shot"] if x["target_alone"] is not None]
        out.append(
            f"{recover}: {diff(best)} ({what(best)}; Figure 3)"
            + (f", against {span(ceiling)} for a model trained on the target alone." if ceiling else ".")
        )
    costs = [x for x in fx if x["question"] == "target data" and x["domain"] == "in-domain"]
    if costs:
        out.append(
            f"Training on the union of the training splits changes the sources' own test accuracy by "
            f"{signed_span([x['difference'] for x in costs])}."
        )
    return " ".join(out)


def resolution_text(nums: dict) -> str:
    """What the resolution does (Table 3): the expected in-domain loss in one line, then what matters."""
    fx = nums["effects"]
    out = []
    drop = [x for x in fx if expected(x)]
    if drop:
        worst = min(drop, key=lambda x: x["difference"])
        out.append(
            f"Lowering the test resolution costs in-domain accuracy, as it must (up to {-worst['difference']:.3f}, "
            f"{what(worst)} at r = {worst['pair'][0][2]})."
        )
    low = _lower_r(fx)
    if low:
        better = sorted((x for x in low if x["verdict"] == "higher"), key=lambda x: -x["difference"])
        out.append(
            f"Across datasets a lower r is clearly better in {len(better)} of {len(low)} cases"
            + (f", most for {what(better[0])} at r = {better[0]['pair'][0][2]} ({diff(better[0])})." if better else ".")
        )
    train = [x for x in fx if x["question"] == "training resolution"]
    if train:
        up = [x for x in train if x["verdict"] == "higher"]
        out.append(f"Training at the higher R is clearly better in {len(up)} of {len(train)} comparisons.")
    inter = [x for x in fx if x["question"] == "remedy x test resolution"]
    if inter:
        changed = [x for x in inter if x["verdict"] != "no clear difference"]
        out.append(
            f"Remedies clearly change the effect of the lowest r in {len(changed)} of {len(inter)} cases (appendix B)."
        )
    return " ".join(out) or "One resolution only in this preset."


def discussion(nums: dict, kaggle: list[dict]) -> str:
    """Three questions, each answered in a short paragraph that points to the tables and figures."""
    fx = nums["effects"]
    ind, cro = nums["in_domain"], nums["cross_domain"]
    parts = []
    if cro:
        byid = {x["model"]: x for x in ind}
        failed = all(x["ci"][1] < byid[x["model"]]["ci"][0] for x in cro if x["model"] in byid)
        text = "**Does the transfer fail, and why?** " + (
            "Yes: every cross-domain interval lies below the same model's in-domain interval (Table 1)."
            if failed
            else "In part: some cross-domain intervals overlap the in-domain ones (Table 1)."
        )
        sep = nums["separability"]
        if sep:
            lowest, best = min(x["ci"][0] for x in sep), max(x["accuracy"] for x in cro)
            text += (
                " The frozen features separate the datasets "
                + ("almost perfectly" if lowest > 0.95 else "well" if lowest > 0.8 else "only partly")
                + f" (lowest bound {f3(lowest)})"
                + (", better than any model carries a letter across them." if lowest > best else ".")
            )
        share, area = _heat(nums)
        if share:
            text += (
                f" Grad-CAM's heat on the hand's box ({span(share)}) is "
                + (
                    "close to"
                    if abs(sum(share) / len(share) - sum(area) / len(area)) < 0.1
                    else "above"
                    if sum(share) > sum(area)
                    else "below"
                )
                + " what an even spread would put there (the box's area), so the maps do not single out the hand."
            )
        if kaggle:
            text += (
                f" On the {kaggle[0]['n']} official Kaggle test images, recorded with the training images, the "
                f"asl_alphabet models score {span([r['accuracy'] for r in kaggle])}: such a test says little about a "
                "new "
                "signer or room."
            )
        parts.append(text)
    rem, few = _cross_remedies(fx), _few(fx)
    if rem or few:
        text = "**What recovers it?**"
        if rem:
            up = [x for x in rem if x["verdict"] == "higher"]
            text += (
                (" Little without target labels: " if little(nums) else " Some of it without target labels: ")
                + f"{len(up)} of {len(rem)} cross-domain comparisons clearly favour a remedy, "
                f"none by more than {max(x['ci_family'][1] for x in rem):+.3f} at the upper bound (Table 2, Figure 2)."
            )
            marks = _landmarks(nums)
            hand = [x for x in rem if x["effect"].endswith(("(landmark classifier)", "(hand crops)"))]
            if marks and hand:
                up = sum(x["verdict"] == "higher" for x in hand)
                text += (
                    (
                        " Looking only at the hand does not fix it: "
                        if up == 0
                        else f" Looking only at the hand helps in {up} of {len(hand)} comparisons: "
                    )
                    + f"the landmark classifiers reach {span([m['accuracy'] for m in marks])} across datasets "
                    "(hand crops: Table 2)."
                )
        if few:
            top = max(few, key=lambda x: x["difference"])
            k_min = min(parse(x["pair"][0][0]).k for x in few)
            small = [x["difference"] for x in few if parse(x["pair"][0][0]).k == k_min]
            text += (
                f" With labelled photos of the new domain, {what(top)} gains {diff(top)}, and {k_min} per letter "
                f"already {signed_span(small)} (Figure 3)."
            )
        parts.append(text)
    low = _lower_r(fx)
    if low:
        better = [x for x in low if x["verdict"] == "higher"]
        text = (
            "**What does downsizing the pixels do?** In-domain it costs accuracy, as expected. Across datasets a lower "
            ""
            f"test resolution is clearly better in {len(better)} of {len(low)} cases (Table 3, Figure 4)"
            + (
                ": removing detail removes part of what ties a model to its own dataset's images."
                if better
                else ": removing detail does not make the other dataset easier."
            )
        )
        parts.append(text)
    return "\n\n".join(parts)


def hands_text(nums: dict, preset) -> str:
    """The hand section: hand crops, the landmark classifier (with augmented landmarks), both
    views, each against the full-image frozen models (their rows in Table 2), and the
    separability of the crops' features beside the whole images'."""
    if not nums["hand_models"]:
        return "Not run in this preset (no hand crops or landmark models)."
    fx = nums["effects"]

    def tally(end: str) -> str:
        xs = [x for x in fx if x["question"] == "remedy" and x["effect"].endswith(end)]
        if not xs:
            return ""
        parts = []
        for dom in ("cross-domain", "in-domain"):
            ds = [x for x in xs if x["domain"] == dom]
            if ds:
                up, down = sum(x["verdict"] == "higher" for x in ds), sum(x["verdict"] == "lower" for x in ds)
                parts.append(
                    f"{dom} {up} clearly higher and {down} clearly lower of {len(ds)} "
                    f"(from {min(x['difference'] for x in ds):+.3f} to {max(x['difference'] for x in ds):+.3f})"
                )
        return "; ".join(parts)

    def rate(d):
        return nums["hands"].get(d, {}).get("splits", {}).get("test")

    found = ", ".join(f"{d} {rate(d):.3f}" for d in nums["hands"] if rate(d) is not None)
    out = []
    if tally("(hand crops)"):
        out.append(
            f"**Hand crops.** Each image is cut to the square around its hand's landmarks (widened by "
            f"{preset.hands.margin:g} of its side on every side; an image with no hand found is used whole) and "
            f"goes through the same frozen backbone and head. Against the full-image model on the same test images, "
            f"cropped: {tally('(hand crops)')} (Table 2)."
        )
    marks = [m for m in nums["hand_models"] if m["kind"] == "landmarks" and "/aug" not in m["model"]]
    if marks:
        own = [m["accuracy"] for m in marks if m["test"] == parse(m["model"].split("@")[0]).sources[0]]
        other = [m["accuracy"] for m in _landmarks(nums)]
        out.append(
            "**The landmark classifier** (the peers' method) sees only the 21 landmarks, relative to the wrist, "
            "scaled by the palm's length and mirrored to a right hand; an image with no hand found is predicted "
            f"`nothing` where the model has that label and counted wrong otherwise (a hand is found in {found} of "
            f"the test images). It reaches {span(own) if own else '–'} in-domain and "
            f"{span(other) if other else '–'} across datasets; against the frozen full-image models: "
            f"{tally('(landmark classifier)')}."
        )
    if tally("(augmented landmarks)"):
        h = preset.hands
        out.append(
            f"**Augmented landmarks** ({h.landmark_views} views of every training hand, turned by up to "
            f"{h.landmark_rotation:g} degrees, stretched and sheared) against the landmark model without them: "
            f"{tally('(augmented landmarks)')}."
        )
    if tally("(hand crops and landmarks)"):
        out.append(
            "**Both views** (the crop's features and the landmarks side by side) against the full-image model: "
            f"{tally('(hand crops and landmarks)')}."
        )
    crop_sep = [x for x in nums["cues"] if x["check"] == "hand crop"]
    if crop_sep:
        whole = [x["accuracy"] for x in nums["separability"]]
        out.append(
            f"**Do the crops still tell the datasets apart?** A linear classifier on the crops' frozen features "
            f"separates them with {span([x['accuracy'] for x in crop_sep])}"
            + (f" (whole images {span(whole)})" if whole else "")
            + (
                ": cutting away most of the room does not make the domains alike."
                if all(x["accuracy_ci_low"] > 0.9 for x in crop_sep)
                else "."
            )
        )
    return "\n\n".join(out)
