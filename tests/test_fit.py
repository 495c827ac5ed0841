"""The training loop every model shares (study.training.fit): another model and parameter
filter resumes exactly, and each epoch shows each row as itself or one of its views."""

import numpy as np
import pytest

from study.training.heads import loss_acc


@pytest.mark.slow  # compiles block 5's training step: 10 s
def test_block5_and_head_resume_exactly_and_only_trainable_parameters_move(tmp_path):
    """study.training.fit with another model and parameter filter: block 5 and a head on maps."""
    from flax import nnx

    from study.network.model import Block5, Classifier, make_head
    from study.training.fit import Schedule, fit, fixed_batches

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    maps = (rng.normal(0, 1, (96, 2, 2, 8)) + y[:, None, None, None]).astype(np.float32)

    def model():
        rngs = nnx.Rngs(params=0, dropout=0)  # dropout reseeded per epoch, as study.stages.train's heads
        return Classifier(Block5(8, 8, rngs=rngs), make_head("mlp", 8, 3, rngs=rngs))

    def run(workdir, epochs):
        m = model()
        return fit(
            m,
            64,
            fixed_batches(maps[:64], y[:64], batch=16),
            lambda m: loss_acc(m, maps[64:], y[64:]),
            Schedule(epochs, 16, 1e-2, 1e-4, 100),
            1,
            workdir,
            log=lambda s: None,
        )

    full, h_full = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed, h_res = run(tmp_path / "b", 4)
    assert [h["val_loss"] for h in h_full] == [h["val_loss"] for h in h_res]
    for a, b in zip(nnx.state(full, nnx.Param).flat_state(), nnx.state(resumed, nnx.Param).flat_state()):
        np.testing.assert_array_equal(a[1][...], b[1][...])
    assert not np.array_equal(
        np.asarray(full.backbone.convs[0].kernel[...]), np.asarray(model().backbone.convs[0].kernel[...])
    )


def test_views_show_each_row_as_itself_or_one_of_its_views():
    from study.training.fit import fixed_batches

    x = np.zeros((10, 2), np.float32)
    views = [np.full((10, 2), 1, np.float32), np.full((10, 2), 2, np.float32)]
    batches = fixed_batches(x, np.arange(10), views, batch=5)
    shown = np.concatenate([b for b, _ in batches(np.arange(10), np.random.default_rng(0))])
    assert set(np.unique(shown)) <= {0, 1, 2} and len(np.unique(shown)) > 1
    assert (shown[:, 0] == shown[:, 1]).all()  # whole rows, never mixed
    again = np.concatenate([b for b, _ in batches(np.arange(10), np.random.default_rng(0))])
    np.testing.assert_array_equal(shown, again)  # drawn from the epoch's generator
