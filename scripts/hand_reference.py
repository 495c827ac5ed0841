"""The golden reference of the hand landmarks: MediaPipe's own `solutions.hands` on 20 real images.

Not part of the study (mediapipe cannot be installed beside it: it pins protobuf < 5). Run once,
in an environment of its own, to write tests/reference/hands_mediapipe.json, which
tests/test_hands.py compares study.hands.detector with:

    python -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==0.10.14 pillow
    /tmp/mp/bin/python scripts/hand_reference.py --data-dir ../shared/data \
        --out tests/reference/hands_mediapipe.json

The images: of each dataset folder below, 10 spread evenly over its sorted image files
(first, last and 8 between), read as the study reads them (upright by EXIF, RGB). MediaPipe
runs as a still-image detector of one hand with its full models (static_image_mode,
max_num_hands=1, model_complexity=1), the setting study.hands reproduces.
"""

import argparse
import json
from pathlib import Path

import mediapipe as mp
import numpy as np
from PIL import Image, ImageOps

FOLDERS = ("asl-alphabet/asl_alphabet_train/asl_alphabet_train", "asl-photos/train")
PER_FOLDER = 10


def images(data_dir: Path) -> list[str]:
    out = []
    for folder in FOLDERS:
        files = sorted(
            p.relative_to(data_dir).as_posix()
            for p in (data_dir / folder).rglob("*")
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        out += [files[i] for i in np.linspace(0, len(files) - 1, PER_FOLDER).round().astype(int)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    rows = []
    with mp.solutions.hands.Hands(
        static_image_mode=True, max_num_hands=1, model_complexity=1, min_detection_confidence=0.5
    ) as hands:
        for rel in images(args.data_dir):
            img = np.asarray(ImageOps.exif_transpose(Image.open(args.data_dir / rel)).convert("RGB"))
            found = hands.process(img)
            row = {"file": rel, "size": [img.shape[1], img.shape[0]], "hand": None}
            if found.multi_hand_landmarks:
                c = found.multi_handedness[0].classification[0]
                row["hand"] = {
                    "landmarks": [[p.x, p.y, p.z] for p in found.multi_hand_landmarks[0].landmark],
                    "handedness": c.label,
                    "score": c.score,
                }
            rows.append(row)
    doc = {
        "made_by": "scripts/hand_reference.py",
        "mediapipe": mp.__version__,
        "settings": {
            "static_image_mode": True,
            "max_num_hands": 1,
            "model_complexity": 1,
            "min_detection_confidence": 0.5,
        },
        "images": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(rows)} images, a hand in {sum(r['hand'] is not None for r in rows)}")


if __name__ == "__main__":
    main()
