# Compares study.hands.detector with the JSON that scripts/hand_reference.py wrote (MediaPipe's own hands).
import sys, json, numpy as np
sys.path.insert(0,'.')
from PIL import Image, ImageOps
from study.hands.detector import HandLandmarker
d = HandLandmarker('/tmp/handmodels/palm_detection_full.tflite','/tmp/handmodels/hand_landmark_full.tflite')
ref = json.load(open('/tmp/handref/ref.json'))
errs=[]; agree=0
for r in ref:
    img = np.asarray(ImageOps.exif_transpose(Image.open(r['file'])).convert('RGB'))
    h = d(img)
    if (h is None) != (r['hand'] is None):
        print('mismatch', r['file'][-30:], 'ours none' if h is None else 'theirs none'); continue
    if h is None: continue
    H, W = img.shape[:2]
    a = np.array(r['hand']['landmarks']); b = h.landmarks
    e = np.abs((a[:, :2] - b[:, :2]) * [W, H]).max()
    errs.append(e)
    agree += h.handedness == r['hand']['handedness']
    if e > 1: print(r['file'][-30:], 'max px err', round(e,2), img.shape, 'z', np.abs(a[:,2]-b[:,2]).max())
print('n', len(errs), 'median max-err px', np.median(errs).round(3), 'max', np.max(errs).round(3), 'handedness agree', agree)
