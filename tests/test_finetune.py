"""Fine-tuning on images, on the tiny VGG: block 5 and the head move, blocks 1-4 do not."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from study.core.config import SMOKE, TrainConfig
from study.datasets import DATASETS, fake
from study.network import model
from study.network.model import BLOCK5
from study.training import finetune


@pytest.mark.slow  # compiles a full VGG16 training step: 10 s
def test_finetune_updates_block5_and_head_only(tmp_path):
    fake.write_asl_folder(tmp_path / "photos", per_class=6, defects=False, size=32)
    b = DATASETS["asl_photos"].make_builder(SMOKE, tmp_path / "tfds")
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "photos")))
    src = b.as_data_source()
    rngs = nnx.Rngs(0)
    backbone = model.VGG16Backbone(width=1 / 16, rngs=rngs)
    clf = model.Classifier(backbone, model.make_head("mlp", backbone.features_dim, 29, rngs=rngs))
    before = {i: np.array(c.kernel[...]) for i, c in enumerate(backbone.convs)}
    head_before = np.array(clf.head.out.kernel[...])
    clf, history = finetune.finetune(
        clf,
        src["train"],
        src["validation"],
        32,
        TrainConfig(epochs=2, batch_size=16, patience=5),
        seed=0,
        workdir=tmp_path,
        log=lambda s: None,
    )
    assert (tmp_path / "checkpoint.npz").is_file()
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) and 0 <= h["val_accuracy"] <= 1 for h in history)
    for i, c in enumerate(backbone.convs):
        moved = not np.array_equal(before[i], np.array(c.kernel[...]))
        assert moved == (i in BLOCK5), i
    assert not np.array_equal(head_before, np.array(clf.head.out.kernel[...]))
