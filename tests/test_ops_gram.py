import numpy as np
import pytest

import reference as ref
from deepstyle import ops
from gradcheck import check_gradient

SHAPES = [
    (1, 1, 1, 1),
    (1, 1, 5, 3),  # one channel
    (2, 3, 5, 7),
    (2, 13, 9, 11),  # odd everything
    (1, 64, 16, 16),
    (3, 33, 20, 30),  # H*W = 600 spans several depth slices of the GEMM
    (1, 70, 1, 1),  # 1x1 feature maps
    (1, 800, 3, 1),  # C > 768: the backward's symmetrised panels come in two depth slices
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gram_matches_reference(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    g = ops.gram(x)
    assert g.shape == (shape[0], shape[1], shape[1])
    ref.assert_close(g, ref.gram(x), terms=shape[2] * shape[3])
    ref.assert_close(g, g.transpose(0, 2, 1).astype(np.float64), terms=shape[2] * shape[3])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gram_backward_matches_reference(shape):
    rng = np.random.default_rng(sum(shape) + 1)
    x = rng.standard_normal(shape).astype(np.float32)
    grad_g = rng.standard_normal((shape[0], shape[1], shape[1])).astype(np.float32)
    grad_x = ops.gram_backward(grad_g, x)
    ref.assert_close(grad_x, ref.gram_backward(grad_g.astype(np.float64), x), terms=2 * shape[1])


@pytest.mark.parametrize("shape", [(1, 3, 2, 4), (2, 2, 3, 3), (1, 1, 1, 5)], ids=str)
def test_gram_backward_matches_finite_differences(shape):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape)
    grad_g = rng.standard_normal((shape[0], shape[1], shape[1]))  # not symmetric on purpose

    def loss(v):
        return np.sum(ref.gram(v) * grad_g)

    check_gradient(loss, x, ref.gram_backward(grad_g, x), rtol=1e-7)
    check_gradient(loss, x, ops.gram_backward(grad_g.astype(np.float32), x), rtol=1e-5)


def test_gram_of_known_features():
    # Two channels over four pixels: F = [[1, 2, 3, 4], [1, 0, -1, 0]].
    x = np.array([[1, 2, 3, 4], [1, 0, -1, 0]], dtype=np.float32).reshape(1, 2, 2, 2)
    np.testing.assert_allclose(ops.gram(x)[0], np.array([[30, -2], [-2, 2]]) / 4, rtol=1e-6)


def test_gram_accepts_other_dtypes_and_views():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 6, 7))
    view = x.transpose(0, 1, 3, 2)
    ref.assert_close(ops.gram(view), ref.gram(view), terms=42)
    grad_g = rng.integers(-3, 4, size=(2, 5, 5))  # integers are converted too
    ref.assert_close(ops.gram_backward(grad_g, view), ref.gram_backward(grad_g, view), terms=10)
