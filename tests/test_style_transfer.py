"""The Painter loop on the tiny stand-in network: descent, seeds, stages, colours, resume."""

from __future__ import annotations

import numpy as np
import pytest

from deepstyle.image import resize_image, rgb_to_yiq
from deepstyle.style import Normalisation, Painter, Settings, estimate_memory
from test_style_tinynet import TinyNet

LAYERS = dict(content_layers=("act2",), style_layers={"act1": 1.0, "act2": 1.0})


def images(seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:24, 0:32] / 32.0
    content = np.stack([x, y, 0.5 + 0.4 * np.sin(6 * x)], axis=-1).astype(np.float32)
    style = rng.uniform(0, 1, (20, 20, 3)).astype(np.float32)
    return content, style


def settings(**overrides):
    base = dict(LAYERS, content_weight=1.0, style_weight=100.0, tv_weight=1e-5, sizes=(32,), iterations=8,
                normalisation=Normalisation())
    base.update(overrides)
    return Settings(**base)


def run(painter):
    seen = []
    image = painter.run(seen.append)
    return image, seen


@pytest.mark.parametrize("optimizer,fraction", [("lbfgs", 0.5), ("adam", 0.7)])
def test_the_loss_goes_down(optimizer, fraction):
    content, style = images()
    image, seen = run(Painter(TinyNet(np.float32), content, [style], settings(optimizer=optimizer, learning_rate=0.02)))
    assert image.shape == (24, 32, 3) and image.dtype == np.float32
    assert len(seen) == 8 and [p.iteration for p in seen] == list(range(1, 9))
    assert seen[-1].loss < fraction * seen[0].loss
    assert seen[-1].loss == pytest.approx(sum(seen[-1].parts.values()))


def test_noise_init_is_repeatable_with_a_seed():
    content, style = images()
    net = TinyNet(np.float32)
    a, _ = run(Painter(net, content, [style], settings(init="noise", seed=3, iterations=2)))
    b, _ = run(Painter(net, content, [style], settings(init="noise", seed=3, iterations=2)))
    c, _ = run(Painter(net, content, [style], settings(init="noise", seed=4, iterations=2)))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.05


def test_init_from_an_image_and_zero_iterations():
    content, style = images()
    start = np.full((12, 16, 3), 0.3, np.float32)
    image, seen = run(Painter(TinyNet(np.float32), content, [style], settings(init=start, iterations=0)))
    assert seen == []
    np.testing.assert_allclose(image, 0.3, atol=1e-6)


def test_stages_go_coarse_to_fine_from_the_last_result():
    content, style = images()
    painter = Painter(TinyNet(np.float32), content, [style], settings(sizes=(16, 32), iterations=3))
    starts = []
    original = painter._initial_image

    def spy(shape, content_at_size):
        x = original(shape, content_at_size)
        starts.append(painter.net.deprocess(x))
        return x

    painter._initial_image = spy
    image, seen = run(painter)
    assert [p.size for p in seen] == [(12, 16)] * 3 + [(24, 32)] * 3
    assert image.shape == (24, 32, 3)
    # stage 2 starts from stage 1's result, upsampled, not from the content image
    first_result = starts[1]
    assert np.abs(first_result - resize_image(content, (24, 32))).max() > 0.01
    assert painter.stage == 1 and painter.iteration == 3


def test_preserve_colors_keeps_the_contents_chroma():
    content, style = images()
    image, _ = run(Painter(TinyNet(np.float32), content, [style], settings(preserve_colors=True)))
    ours, theirs = rgb_to_yiq(image), rgb_to_yiq(content)
    inside = (image > 0.02).all(axis=2) & (image < 0.98).all(axis=2)  # not clipped
    np.testing.assert_allclose(ours[..., 1:][inside], theirs[..., 1:][inside], atol=2e-3)
    assert np.abs(ours[..., 0] - theirs[..., 0]).max() > 0.01


def test_resume_continues_where_the_state_says():
    content, style = images()
    net = TinyNet(np.float32)
    first = Painter(net, content, [style], settings(sizes=(16, 32), iterations=4))
    stop_after = 6

    class Stop(Exception):
        pass

    def interrupt(p):
        if p.stage * 4 + p.iteration == stop_after:
            raise Stop

    with pytest.raises(Stop):
        first.run(interrupt)
    state = first.state()
    assert (int(state["stage"]), int(state["iteration"])) == (1, 2)
    second = Painter(net, content, [style], settings(sizes=(16, 32), iterations=4), resume=state)
    np.testing.assert_array_equal(second._initial_image((24, 32), None), state["x"])
    _, seen = run(second)
    assert [(p.stage, p.iteration) for p in seen] == [(1, 3), (1, 4)]
    with pytest.raises(ValueError, match="resume: checkpoint stage 1 is not among"):
        Painter(net, content, [style], settings(sizes=(32,), iterations=4), resume=state)


def test_too_small_sizes_are_refused():
    content, style = images()
    net = TinyNet(np.float32)
    net.min_size = 16
    with pytest.raises(ValueError, match="smaller than the network's minimum of 16 px"):
        Painter(net, content, [style], settings(sizes=(16,)))
    with pytest.raises(ValueError, match="style_scale: style image 1"):
        Painter(net, content, [style], settings(sizes=(32,), style_scale=0.3))


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="optimizer"):
        settings(optimizer="sgd")
    with pytest.raises(ValueError, match="style_weight"):
        settings(style_weight=-1.0)
    with pytest.raises(ValueError, match="sizes"):
        settings(sizes=())
    with pytest.raises(ValueError, match="init"):
        settings(init="zeros")
    preset = Settings.from_preset("blog", sizes=(64,))
    assert preset.content_layers == ("relu2_2",) and preset.content_weight == 0.025
    assert preset.normalisation.tv_power == 2.5 and preset.sizes == (64,)


def test_memory_estimate_counts_every_activation():
    net = TinyNet(np.float32)
    memory = estimate_memory(net, (40, 64), ["act1", "act2"], optimizer="lbfgs", history=5)
    full, half = 40 * 64, 20 * 32
    assert memory["activations"] == 4 * (4 * full * 2 + 4 * half + 6 * half * 2)
    assert memory["gradients"] == 4 * 2 * 4 * full
    assert memory["optimizer"] == 4 * (2 * 5 + 4) * 3 * full
    assert memory["total"] == sum(v for k, v in memory.items() if k != "total")
