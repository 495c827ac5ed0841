"""The Python API (study.api) on a committed model of the study of record: every kind of image
the same prediction, probabilities over the model's letters, bad requests refused by name.
(That a photo gets the letter `score` gives it is checked in test_fresh_clone.py.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from study import api
from study.core.errors import ConfigError, MissingArtefact

pytestmark = pytest.mark.slow  # converts the ImageNet weights and compiles VGG16: half a minute


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return api.load(
        "asl_photos@64", seeds=[0, 1], results=REPO / "results" / "cpu", weights_dir=tmp_path_factory.mktemp("weights")
    )


def test_paths_pil_images_bytes_and_arrays_give_the_same_prediction(model, shared_data, tmp_path):
    path = sorted((shared_data / "asl-photos" / "train" / "Y").glob("*.jpg"))[0]
    data = path.read_bytes()
    pil = Image.open(io.BytesIO(data))
    array = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # no EXIF tag to apply on this photo
    p = model.predict_proba([path, pil, data, array, str(path)])
    assert p.shape == (5, 29) and np.allclose(p.sum(axis=1), 1) and np.allclose(p, p[0], atol=1e-6)
    assert model.labels[p[0].argmax()] == model.predict([path])[0] and model.seeds == (0, 1)
    assert model.predict([]) == []


def test_bad_requests_are_refused_by_name(tmp_path):
    results = REPO / "results" / "cpu"
    with pytest.raises(ConfigError, match=r"no model 'mnist@64' .*asl_photos@64"):
        api.load("mnist@64", results=results, weights_dir=tmp_path)
    with pytest.raises(ConfigError, match="expected name@R"):
        api.load("asl_photos", results=results, weights_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"seeds \[7\]"):
        api.load("asl_photos@64", seeds=7, results=results, weights_dir=tmp_path)
    with pytest.raises(MissingArtefact, match="block5.npz"):
        api.load("asl_photos/ft5@64", seeds=0, results=results, weights_dir=tmp_path)


def test_an_array_must_be_an_rgb_image(model):
    with pytest.raises(ConfigError, match="H x W x 3 uint8"):
        model.predict([np.zeros((32, 32), np.uint8)])
