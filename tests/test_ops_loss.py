import numpy as np
import pytest

import reference as ref
from deepstyle import ops
from gradcheck import check_gradient


@pytest.mark.parametrize("n,k", [(1, 1), (1, 2), (5, 10), (100, 10), (3, 1000)])
def test_softmax_cross_entropy_matches_reference(n, k):
    rng = np.random.default_rng(n * k)
    logits = (rng.standard_normal((n, k)) * 3).astype(np.float32)
    labels = rng.integers(0, k, size=n)
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    ref_loss, ref_grad = ref.softmax_cross_entropy(logits, labels)
    assert isinstance(loss, float)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6, atol=1e-7)
    ref.assert_close(grad, ref_grad, terms=k)


def test_softmax_cross_entropy_matches_finite_differences():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 6)) * 2
    labels = np.array([0, 5, 2, 2])
    _, grad = ops.softmax_cross_entropy(logits, labels)

    def loss(z):
        return ref.softmax_cross_entropy(z, labels)[0]

    check_gradient(loss, logits, ref.softmax_cross_entropy(logits, labels)[1], rtol=1e-7)
    check_gradient(loss, logits, grad, rtol=1e-5)


@pytest.mark.parametrize("scale", [1e4, -1e4, 3e37])
def test_softmax_cross_entropy_is_stable_for_huge_logits(scale):
    logits = np.array([[1.0, 0.5, -1.0], [0.25, 1.0, 0.0]], np.float32) * np.float32(scale)
    labels = np.array([1, 1])
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    ref_loss, ref_grad = ref.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    ref.assert_close(grad, ref_grad)


def test_softmax_cross_entropy_of_known_values():
    # Equal logits: loss log(K), gradient (1/K - onehot) / N.
    loss, grad = ops.softmax_cross_entropy(np.zeros((2, 4)), np.array([3, 0]))
    np.testing.assert_allclose(loss, np.log(4), rtol=1e-7)
    np.testing.assert_allclose(grad, [[0.125, 0.125, 0.125, -0.375], [-0.375, 0.125, 0.125, 0.125]],
                               rtol=1e-6)
    # The rows of the gradient sum to zero.
    rng = np.random.default_rng(2)
    _, grad = ops.softmax_cross_entropy(rng.standard_normal((7, 5)), rng.integers(0, 5, 7))
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-7)


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int32, np.uint32, np.int64,
                                         np.uint64])
def test_softmax_cross_entropy_accepts_integer_labels(label_dtype):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((6, 4))  # float64 logits are converted
    labels = np.array([0, 1, 2, 3, 3, 0], dtype=label_dtype)
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    ref_loss, ref_grad = ref.softmax_cross_entropy(logits.astype(np.float32), labels.astype(int))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    ref.assert_close(grad, ref_grad, terms=4)
    loss_list, _ = ops.softmax_cross_entropy(logits, [0, 1, 2, 3, 3, 0])  # a plain list too
    assert loss_list == loss


def test_softmax_cross_entropy_accepts_views():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((5, 8)).astype(np.float32)
    view = logits.T  # (8, 5): 8 rows of 5 classes, not contiguous
    labels = np.array([0, 1, 2, 3, 4, 0, 1, 2])
    loss, grad = ops.softmax_cross_entropy(view, labels)
    ref_loss, ref_grad = ref.softmax_cross_entropy(view, labels)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    ref.assert_close(grad, ref_grad, terms=5)


def test_softmax_cross_entropy_matches_torch(torch_single_threaded):
    torch = torch_single_threaded
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((20, 7)) * 5).astype(np.float32)
    labels = rng.integers(0, 7, size=20)
    zt = torch.from_numpy(logits).requires_grad_(True)
    loss_t = torch.nn.functional.cross_entropy(zt, torch.from_numpy(labels))
    (grad_t,) = torch.autograd.grad(loss_t, zt)
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-6)
    np.testing.assert_allclose(grad, grad_t.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("gap", [4.0, 16.0, 40.0, 80.0])  # up to where (p - 1)/N is a normal float32
def test_softmax_cross_entropy_gradient_at_a_confident_label_keeps_its_relative_accuracy(gap):
    """When the label's probability p is near 1, its gradient (p - 1)/N is tiny and p - 1 computed
    as a difference cancels (6% wrong at a gap of 16 in float32, all of it at 40 in double): the
    entry must be -(sum of the other exponentials) / sum / N, to float32 relative accuracy."""
    logits = np.array([[gap, 0.0, -1.0, 0.5], [0.0, gap + 1.0, 0.25, -3.0]], np.float32)
    labels = np.array([0, 1])
    _, grad = ops.softmax_cross_entropy(logits, labels)
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    for row, label in enumerate(labels):
        expected = -np.delete(e[row], label).sum() / e[row].sum() / len(labels)
        np.testing.assert_allclose(grad[row, label], expected, rtol=16 * ref.EPS32)
