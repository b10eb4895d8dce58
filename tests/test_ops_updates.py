"""The optimisers' fused in-place updates, ops.sgd_update and ops.adam_update, against the float64
formulas of tests/reference.py on randomised shapes (empty, single, across the vector width and
the threading threshold) and options (no velocity, no decay), and their argument checks.

Tolerance: each output element is a handful of float32 roundings of terms no larger than the
result's largest magnitude (the parameters, moments and step sizes are O(1) here), so
reference.assert_close with a few terms bounds it."""

import numpy as np
import pytest

import reference as ref
from deepstyle import ops

SHAPES = [(0,), (1,), (17,), (3, 5, 7), (70000,)]  # 70000: above the threads' threshold


def arrays(rng, shape, *positive):
    """param, grad, and one array per entry of ``positive`` (True: non-negative, as Adam's v)."""
    out = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    out += [np.abs(rng.standard_normal(shape)).astype(np.float32) if pos
            else rng.standard_normal(shape).astype(np.float32) for pos in positive]
    return out


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 5e-4),
                                                    (0.0, 0.1)])
def test_sgd_update(shape, momentum, weight_decay):
    rng = np.random.default_rng(sum(shape) + int(10 * momentum))
    param, grad, velocity = arrays(rng, shape, False)
    velocity = velocity if momentum else None
    expected_p, expected_v = ref.sgd_update(param, grad, velocity, 0.05, momentum, weight_decay)
    out = ops.sgd_update(param, grad, velocity, lr=0.05, momentum=momentum,
                         weight_decay=weight_decay)
    assert out is param
    ref.assert_close(param, expected_p, terms=4)
    if velocity is not None:
        ref.assert_close(velocity, expected_v, terms=4)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("step, weight_decay", [(1, 0.0), (7, 0.01)])
def test_adam_update(shape, step, weight_decay):
    rng = np.random.default_rng(sum(shape) + step)
    param, grad, m, v = arrays(rng, shape, False, True)
    b1, b2, lr, eps = 0.9, 0.999, 0.01, 1e-8
    options = dict(step_size=lr / (1 - b1**step), beta1=b1, beta2=b2, eps=eps,
                   correction2=1 - b2**step, weight_decay=weight_decay)
    expected = ref.adam_update(param, grad, m, v, **options)
    assert ops.adam_update(param, grad, m, v, **options) is param
    for actual, want in zip((param, m, v), expected):
        ref.assert_close(actual, want, terms=6)


def test_updates_take_any_real_gradient():
    param, velocity = np.ones(4, np.float32), np.zeros(4, np.float32)
    ops.sgd_update(param, np.arange(4), velocity, lr=0.5, momentum=0.5)  # int64 gradient
    np.testing.assert_array_equal(param, [1.0, 0.5, 0.0, -0.5])


@pytest.mark.parametrize("make, message", [
    (lambda p, g, s: ops.sgd_update(p.astype(np.float64), g, lr=0.1), "param: expected a writeable"),
    (lambda p, g, s: ops.sgd_update(p[::2], g[::2], lr=0.1), "param: expected a writeable"),
    (lambda p, g, s: ops.sgd_update(p, g[:3], lr=0.1), r"grad: expected shape \(4,\)"),
    (lambda p, g, s: ops.sgd_update(p, g, s[:3], lr=0.1), r"velocity: expected shape \(4,\)"),
    (lambda p, g, s: ops.sgd_update(p, g, p, lr=0.1), "velocity: must not share memory with param"),
    (lambda p, g, s: ops.sgd_update(p, p, lr=0.1), "grad: must not share memory with param"),
    (lambda p, g, s: ops.sgd_update(p, g, lr="fast"), "lr: expected a real number"),
    (lambda p, g, s: ops.adam_update(p, g, s, s, step_size=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                                     correction2=0.1), "v: must not share memory with m"),
    (lambda p, g, s: ops.adam_update(p, g, s, g.copy(), step_size=0.1, beta1=0.9, beta2=0.99,
                                     eps=1e-8, correction2=0.0), "correction2: expected a positive"),
    (lambda p, g, s: ops.adam_update([1.0], g, s, s, step_size=0.1, beta1=0.9, beta2=0.99,
                                     eps=1e-8, correction2=0.1), "param: expected a writeable"),
])
def test_update_errors_name_the_argument(make, message, ops_device):
    if ops_device != "cpu":
        pytest.skip("checks of the host arrays themselves (a device copy is always contiguous)")
    param, grad, state = (np.ones(4, np.float32) for _ in range(3))
    before = param.copy()
    with pytest.raises((TypeError, ValueError), match=message):
        make(param, grad, state)
    np.testing.assert_array_equal(param, before)  # nothing written


def test_read_only_param_is_refused(ops_device):
    if ops_device != "cpu":
        pytest.skip("checks of the host arrays themselves (a device array is always writeable)")
    param = np.ones(3, np.float32)
    param.flags.writeable = False
    with pytest.raises(TypeError, match="param: expected a writeable"):
        ops.sgd_update(param, np.ones(3, np.float32), lr=0.1)
