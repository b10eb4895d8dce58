import numpy as np
import pytest

import deepstyle
import reference as ref
from deepstyle import ops

TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]


def operands(rng, m, n, k, trans_a, trans_b, dtype=np.float32):
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b


# Shapes around the SIMD tiles of the blocked driver (MR x NR = 8 x 48 with AVX-512, 6 x 16
# otherwise) and its cache blocks (KC = 768 deep, MC = 256 rows, NC = 3072 columns): one less, one
# more, primes; and around the unpacked small-product kernels (tiles of up to 8 rows and 3 vectors,
# a masked last vector; products below 2**22 when B is not transposed, below 2**18 with a sum of 32
# or more when both are): 97x161x271 is just above, 64x64x64 at the second limit.
SHAPES = [
    (1, 1, 1),
    (1, 37, 5),
    (29, 1, 8),
    (13, 33, 257),
    (12, 32, 256),
    (11, 31, 255),
    (25, 65, 513),
    (193, 17, 3),
    (7, 4099, 19),
    (97, 161, 271),
    (64, 64, 64),
    (8, 8, 4099),
    (3, 17, 31),
]


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_gemm_matches_reference(m, n, k, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a, b = operands(rng, m, n, k, trans_a, trans_b)
    c = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    ref.assert_close(c, ref.gemm(a, b, trans_a=trans_a, trans_b=trans_b), terms=k)


# Products above the small-product limit with a shallow sum over few rows, which also run unpacked
# (K <= 80 and M <= 64, neither operand transposed; the blocked driver otherwise): at both limits
# and one past each, fewer rows than a tile, a sum of 1, N not a multiple of the column panel (48)
# or of a vector; B and C of 10 MB or more (panels copied as the tiles go, or with one row tile
# or a sum of at most 8, read in place and prefetched).
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("m,n,k", [(32, 2100, 80), (32, 2100, 81), (64, 1100, 64), (65, 1100, 64),
                                   (3, 30001, 50), (64, 70001, 1), (17, 40001, 50),
                                   (7, 60001, 45)])
def test_gemm_shallow_products_match_reference(m, n, k, trans_a):
    rng = np.random.default_rng(m + n + k)
    a, b = operands(rng, m, n, k, trans_a, False)
    assert m * n * k >= 2**22
    c = ops.gemm(a, b, trans_a=trans_a, alpha=0.75)
    ref.assert_close(c, ref.gemm(a, b, trans_a=trans_a, alpha=0.75), terms=k)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = ops.gemm(a, b, c0.copy(), trans_a=trans_a, beta=-0.5)
    ref.assert_close(c, ref.gemm(a, b, c0, trans_a=trans_a, beta=-0.5), terms=k + 1)


# Large outputs of shallow products (at least 2**20 floats, rows a whole number of vectors) are
# written with streaming stores, the column panels shifted so that they start on a 64-byte line:
# C at every float offset from a line, and at no float alignment at all; nothing outside C is
# touched. 16 rows: the unpacked kernels, B's panels read in place (a sum of 4) and copied (32);
# 72 rows: the blocked driver.
@pytest.mark.parametrize("m", [16, 72])
@pytest.mark.parametrize("k", [4, 32])
@pytest.mark.parametrize("offset", list(range(17)) + ["unaligned"])
def test_gemm_shallow_large_output_at_any_alignment(offset, k, m):
    rng = np.random.default_rng(11)
    n = 65536
    a, b = operands(rng, m, n, k, False, False)
    if offset == "unaligned":  # one byte past a float
        raw = np.full((m * n + 2) * 4 + 4, 7, np.uint8)
        buffer = np.frombuffer(raw.data, np.float32, m * n + 2, 1 + -raw.ctypes.data % 4)
        assert not buffer.flags.aligned
        c, inside = buffer[1:-1].reshape(m, n), slice(1, m * n + 1)
    else:
        raw = np.full(m * n + 32, 5.0, np.float32)
        first = (-raw.ctypes.data // 4) % 16 + offset
        c, inside = raw[first:first + m * n].reshape(m, n), slice(first, first + m * n)
        buffer = raw
    outside = np.concatenate([buffer[:inside.start], buffer[inside.stop:]]).copy()
    ops.gemm(a, b, c)
    ref.assert_close(c, ref.gemm(a, b), terms=k)
    np.testing.assert_array_equal(np.concatenate([buffer[:inside.start], buffer[inside.stop:]]),
                                  outside)


def streamed_shapes(count, seed):
    """Random shallow products (a sum of 1-80) with outputs of 2**20 floats or more, rows a whole
    number of vectors or not, C at a random float offset from a 64-byte line, and any transposes:
    the streaming stores of the unpacked kernels and of the blocked driver (shifted panels)."""
    rng = np.random.default_rng(seed)
    shapes = []
    for _ in range(count):
        m, k = int(rng.integers(1, 200)), int(rng.integers(1, 81))
        n = int(rng.integers((1 << 20) // m + 1, (1 << 20) // m + 3000))
        n = n // 16 * 16 if rng.integers(0, 3) else n
        shapes.append((m, n, k, int(rng.integers(0, 16)), *(bool(t) for t in rng.integers(0, 2, 2))))
    return shapes


@pytest.mark.parametrize("m,n,k,offset,trans_a,trans_b", streamed_shapes(6, 23))
def test_gemm_streamed_outputs_match_reference_alike_at_one_and_two_threads(
        m, n, k, offset, trans_a, trans_b, restore_threads):
    rng = np.random.default_rng(m + n + k)
    a, b = operands(rng, m, n, k, trans_a, trans_b)
    results = []
    for threads in (1, 2):
        deepstyle.set_num_threads(threads)
        raw = np.full(m * n + 32, 5.0, np.float32)
        first = (-raw.ctypes.data // 4) % 16 + offset
        ops.gemm(a, b, raw[first:first + m * n].reshape(m, n), trans_a=trans_a, trans_b=trans_b)
        np.testing.assert_array_equal(np.delete(raw, np.s_[first:first + m * n]), 5.0)
        results.append(raw[first:first + m * n].reshape(m, n))
    np.testing.assert_array_equal(results[0], results[1])
    ref.assert_close(results[0], ref.gemm(a, b, trans_a=trans_a, trans_b=trans_b), terms=k)


@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
def test_gemm_spanning_several_cache_blocks(trans_a, trans_b):
    rng = np.random.default_rng(7)
    a, b = operands(rng, 300, 700, 600, trans_a, trans_b)
    c = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    ref.assert_close(c, ref.gemm(a, b, trans_a=trans_a, trans_b=trans_b), terms=600)


# Partial tiles and two depth slices of the blocked driver, so that beta meets the K loop; and
# a product small enough for the unpacked kernels of every transpose (17 rows: tiles of 6, 6, 5).
@pytest.mark.parametrize("m,n,k", [(45, 70, 300), (17, 50, 40)])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, -0.75), (-2.0, 0.0), (1.5, 2.0)])
def test_gemm_alpha_beta_writes_into_c(trans_a, trans_b, alpha, beta, m, n, k):
    rng = np.random.default_rng(11)
    a, b = operands(rng, m, n, k, trans_a, trans_b)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = c0.copy()
    out = ops.gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    assert out is c
    expected = ref.gemm(a, b, c0, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
    ref.assert_close(c, expected, terms=k)


@pytest.mark.parametrize("m,n,k", [(13, 33, 257), (5, 3, 2), (200, 40, 600)])
def test_gemm_beta_zero_ignores_nan_in_c(m, n, k):
    rng = np.random.default_rng(3)
    a, b = operands(rng, m, n, k, False, False)
    c = np.full((m, n), np.nan, dtype=np.float32)
    ops.gemm(a, b, c, beta=0.0)
    assert np.isfinite(c).all()
    ref.assert_close(c, ref.gemm(a, b), terms=k)


def test_gemm_alpha_zero_only_scales_c():
    rng = np.random.default_rng(4)
    a, b = operands(rng, 9, 10, 11, False, False)
    c0 = rng.standard_normal((9, 10)).astype(np.float32)
    c = c0.copy()
    ops.gemm(a, b, c, alpha=0.0, beta=3.0)
    np.testing.assert_array_equal(c, 3.0 * c0)


def test_gemm_empty_inner_dimension_gives_beta_c():
    a = np.zeros((4, 0), np.float32)
    b = np.zeros((0, 6), np.float32)
    np.testing.assert_array_equal(ops.gemm(a, b), np.zeros((4, 6), np.float32))
    c = np.full((4, 6), 2.0, np.float32)
    ops.gemm(a, b, c, beta=0.5)
    np.testing.assert_array_equal(c, np.ones((4, 6), np.float32))


def test_gemm_returns_new_float32_array():
    rng = np.random.default_rng(5)
    a, b = operands(rng, 3, 4, 5, False, False)
    c = ops.gemm(a, b, beta=7.0)  # beta has nothing to scale without c
    assert c.dtype == np.float32 and c.shape == (3, 4) and c.flags.c_contiguous
    ref.assert_close(c, ref.gemm(a, b), terms=5)


class _Subclass(np.ndarray):
    pass


# ops.gemm's one-step call (_cpu.gemm_new) takes exactly float32 C-contiguous ndarrays, True or
# False and float alpha and beta, and keeps the GIL below 2**18 multiply-adds; every other form
# goes the general way. Both must give the same product.
@pytest.mark.parametrize("form", ["plain", "alpha float32", "alpha float64", "alpha int",
                                  "beta int", "numpy bool flags", "subclass", "fortran order"])
@pytest.mark.parametrize("m,n,k", [(64, 64, 63), (64, 64, 64), (1, 1, 1), (10, 100, 64)])
def test_gemm_common_call_and_its_variants_match_reference(form, m, n, k):
    rng = np.random.default_rng(m + n + k)
    a, b = operands(rng, m, n, k, False, True)
    alpha, beta, flag = 1.5, 0.0, True
    if form == "alpha float32":
        alpha = np.float32(1.5)
    elif form == "alpha float64":
        alpha = np.float64(1.5)  # a float subclass
    elif form == "alpha int":
        alpha = 2
    elif form == "beta int":
        beta = 3  # nothing to scale without c
    elif form == "numpy bool flags":
        flag = np.True_
    elif form == "subclass":
        a, b = a.view(_Subclass), b.view(_Subclass)
    elif form == "fortran order":
        a, b = np.asfortranarray(a), np.asfortranarray(b)
    c = ops.gemm(a, b, trans_a=False, trans_b=flag, alpha=alpha, beta=beta)
    assert type(c) is np.ndarray and c.dtype == np.float32 and c.shape == (m, n)
    ref.assert_close(c, float(alpha) * ref.gemm(np.asarray(a), np.asarray(b), trans_b=True), terms=k)


def test_gemm_new_needs_its_six_arguments():
    from deepstyle import _cpu

    a = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match="6"):
        _cpu.gemm_new(a, a, False, False, 1.0)
    assert _cpu.gemm_new(a, a, 0, False, 1.0, 0.0) is None  # declined: ops.gemm says why


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.uint8, np.int64])
def test_gemm_accepts_any_real_dtype(dtype):
    rng = np.random.default_rng(6)
    a = (rng.standard_normal((17, 23)) * 4).astype(dtype)
    b = (rng.standard_normal((23, 19)) * 4).astype(dtype)
    c = ops.gemm(a, b)
    expected = ref.gemm(a.astype(np.float32), b.astype(np.float32))
    ref.assert_close(c, expected, terms=23)


def test_gemm_accepts_non_contiguous_views():
    rng = np.random.default_rng(8)
    base_a = rng.standard_normal((40, 60)).astype(np.float32)
    base_b = rng.standard_normal((50, 70)).astype(np.float32)
    a = base_a.T[::2, 1:]  # (30, 39), strided and transposed
    b = base_b[1::1, ::-2][:39]  # (39, 35), negative strides
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    c = ops.gemm(a, b)
    ref.assert_close(c, ref.gemm(a, b), terms=39)
    # The same data through trans flags on contiguous copies gives the same answer.
    ref.assert_close(ops.gemm(np.ascontiguousarray(a.T), b, trans_a=True), ref.gemm(a, b), terms=39)


def test_gemm_leaves_inputs_unchanged():
    rng = np.random.default_rng(9)
    a, b = operands(rng, 20, 30, 40, True, True)
    a0, b0 = a.copy(), b.copy()
    ops.gemm(a, b, trans_a=True, trans_b=True)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("a_shape,b_shape,alpha", [((4, 0), (0, 6), 1.0), ((4, 5), (5, 6), 0.0)])
def test_gemm_without_products_overwrites_nan_c_when_beta_is_zero(a_shape, b_shape, alpha):
    c = np.full((4, 6), np.nan, np.float32)
    ops.gemm(np.ones(a_shape), np.ones(b_shape), c, alpha=alpha, beta=0.0)
    np.testing.assert_array_equal(c, 0.0)


def test_gemm_propagates_nan_from_inputs():
    a = np.ones((13, 40), np.float32)
    a[5, 17] = np.nan
    c = ops.gemm(a, np.ones((40, 33), np.float32))
    assert np.isnan(c[5]).all() and np.isfinite(np.delete(c, 5, axis=0)).all()


def random_shapes(count, seed):
    rng = np.random.default_rng(seed)
    return [tuple(int(v) for v in rng.integers(1, 400, size=3)) for _ in range(count)]


@pytest.mark.parametrize("m,n,k", random_shapes(12, 99))
def test_gemm_random_shapes_match_reference(m, n, k):
    rng = np.random.default_rng(m + n + k)
    trans_a, trans_b = (bool(v) for v in rng.integers(0, 2, size=2))
    a, b = operands(rng, m, n, k, trans_a, trans_b)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = ops.gemm(a, b, c0.copy(), trans_a=trans_a, trans_b=trans_b, alpha=0.75, beta=-0.5)
    expected = ref.gemm(a, b, c0, trans_a=trans_a, trans_b=trans_b, alpha=0.75, beta=-0.5)
    ref.assert_close(c, expected, terms=k)


@pytest.mark.parametrize("m,k", [(300, 200), (100, 2000), (9, 5), (800, 40)])
def test_gemm_of_a_matrix_with_its_own_transpose_is_symmetric_and_matches(m, k):
    # a @ a.T on one buffer computes one triangle and mirrors it (dot products or the blocked
    # driver's upper tiles, by size); with beta != 0 it is an ordinary product.
    rng = np.random.default_rng(m + k)
    a = rng.standard_normal((m, k)).astype(np.float32)
    c = ops.gemm(a, a, trans_b=True)
    np.testing.assert_array_equal(c, c.T)
    ref.assert_close(c, ref.gemm(a, a, trans_b=True), terms=k)
    c0 = rng.standard_normal((m, m)).astype(np.float32)
    c2 = ops.gemm(a, a, c0.copy(), trans_b=True, beta=0.5)
    ref.assert_close(c2, ref.gemm(a, a, c0, trans_b=True, beta=0.5), terms=k)


def test_gemm_writes_only_inside_c():
    rng = np.random.default_rng(10)
    a, b = operands(rng, 13, 33, 20, False, False)
    buffer = np.full((17, 33), 5.0, np.float32)
    c = buffer[2:15]  # a contiguous block of rows inside a larger array
    ops.gemm(a, b, c, beta=0.0)
    ref.assert_close(c, ref.gemm(a, b), terms=20)
    np.testing.assert_array_equal(buffer[:2], 5.0)
    np.testing.assert_array_equal(buffer[15:], 5.0)
