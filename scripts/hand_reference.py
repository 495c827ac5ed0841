# Runs in the mediapipe==0.10.14 environment: MediaPipe's own hands on a list of images.
import json, sys
import numpy as np
from PIL import Image, ImageOps
import mediapipe as mp
paths = [l.strip() for l in open(sys.argv[1]) if l.strip()]
out = []
with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1, model_complexity=1, min_detection_confidence=0.5) as hands:
    for p in paths:
        img = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
        r = hands.process(img)
        if not r.multi_hand_landmarks:
            out.append({"file": p, "hand": None}); continue
        lm = [[l.x, l.y, l.z] for l in r.multi_hand_landmarks[0].landmark]
        c = r.multi_handedness[0].classification[0]
        out.append({"file": p, "hand": {"landmarks": lm, "handedness": c.label, "score": c.score}, "size": list(img.shape[:2])})
json.dump(out, open(sys.argv[2], "w"))
print(len(out), sum(o["hand"] is not None for o in out))
