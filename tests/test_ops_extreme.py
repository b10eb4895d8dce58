"""Extreme but valid geometries: strides, kernels and paddings far beyond the vector paths'
layouts. Results match the float64 reference, and memory follows the output, not the padded
geometry (measured in a subprocess under a 4 GB address-space limit)."""

import json
import os

import numpy as np
import pytest

import reference as ref
from deepstyle import ops

rng = np.random.default_rng(12)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 17, 0), (3, (40, 1), 1), ((1, 3), (2, 33), (0, 1)),
                                                     (4, 10**6, 2), ((5, 2), (10**12, 10**12), (2, 1))])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pooling_with_huge_strides_matches_the_reference(kernel, stride, padding, ceil_mode):
    x = rng.standard_normal((2, 3, 9, 40)).astype(np.float32)
    y = ops.max_pool2d(x, kernel, stride, padding, ceil_mode)
    ref.assert_close(y, ref.max_pool2d(x, kernel, stride, padding, ceil_mode))
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode),
                     ref.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode))
    for include in (True, False):
        y = ops.avg_pool2d(x, kernel, stride, padding, ceil_mode, include)
        ref.assert_close(y, ref.avg_pool2d(x, kernel, stride, padding, ceil_mode, include), terms=20)
        ref.assert_close(ops.avg_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode, include),
                         ref.avg_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode, include), terms=20)


def test_pooling_with_a_kernel_wider_than_the_vector_layout():
    x = rng.standard_normal((1, 2, 3, 2100)).astype(np.float32)
    ref.assert_close(ops.max_pool2d(x, (2, 2049), 1, (1, 1024)), ref.max_pool2d(x, (2, 2049), 1, (1, 1024)))


MEASURE = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import numpy as np
from deepstyle import ops
x = np.ones((2, 3, 8, 8), np.float32)
results = []
for call in json.loads(sys.argv[1]):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        out = eval(call)
        outcome = "ok"
    except (ValueError, TypeError) as exc:
        outcome = type(exc).__name__ + ": " + str(exc)
    results.append((call, outcome, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024))
print(json.dumps(results))
"""

CALLS = [
    "ops.max_pool2d(x, 2, stride=558992244657865201)",
    "ops.max_pool2d(x, 2**62, 1, 2**61)",
    "ops.max_pool2d(x, 2, stride=10**12)",
    "ops.max_pool2d(x, 2, stride=10**6)",
    "ops.avg_pool2d(x, 2, stride=10**7)",
    "ops.max_pool2d_backward(np.ones((2, 3, 1, 1), np.float32), x, 2, stride=10**7)",
    "ops.avg_pool2d_backward(np.ones((2, 3, 1, 1), np.float32), x, 2, stride=10**7)",
    "ops.conv2d(np.ones((2, 0, 8, 8), np.float32), np.ones((4, 0, 3, 3), np.float32))",
    "ops.conv2d_backward(np.ones((2, 0, 6, 6), np.float32), x, np.ones((0, 3, 3, 3), np.float32))",
    "ops.conv2d_backward(np.ones((1, 1, 503, 503), np.float32), np.ones((1, 1, 8, 8), np.float32), np.ones((1, 1, 3, 3), np.float32), stride=2, padding=500)",
    "ops.conv2d(x, np.ones((4, 3, 3, 3), np.float32), stride=10**6, padding=1)",
    "ops.conv2d_backward(np.ones((1, 1, 473, 473), np.float32), np.ones((1, 1, 8, 8), np.float32), np.ones((1, 1, 64, 64), np.float32), stride=2, padding=500)",
]


def test_extreme_calls_end_cleanly_in_memory_proportional_to_the_output(run_python_limited):
    result = run_python_limited("-c", MEASURE, json.dumps(CALLS))
    assert result.returncode == 0, result.stderr[-3000:]
    for call, outcome, grown in json.loads(result.stdout):
        assert outcome == "ok" or outcome.startswith("ValueError"), (call, outcome)
        assert grown < 64, (call, grown)


def test_grad_x_of_a_large_kernel_with_a_large_padding_in_position_chunks():
    """One image's dcol (taps x positions) is over the 16 MB chunk: grad_x is built from chunks
    of the image's positions and still matches the reference."""
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((3, 4, 16, 16)).astype(np.float32)
    y = ops.conv2d(x, w, stride=2, padding=100)
    assert 4 * 16 * 16 * y.shape[2] * y.shape[3] > 1 << 22
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    grad_x, grad_w, grad_b = ops.conv2d_backward(grad_y, x, w, stride=2, padding=100)
    expected = ref.conv2d_backward(grad_y, x, w, stride=2, padding=100)
    ref.assert_close(grad_x, expected[0], terms=3 * 64)
    ref.assert_close(grad_w, expected[1], terms=2 * y.shape[2] * y.shape[3])


def test_few_output_channels_on_random_ordinary_shapes():
    """1-4 output channels (the direct few-channel kernel) on random stride-1 shapes: the last
    block of virtual columns reads whole vectors near the end of the padded batch, which the
    sanitizer run (scripts/sanitize.sh) checks stay inside it."""
    local = np.random.default_rng(5)
    for _ in range(40):
        n, c, h, w, k, r = (int(v) for v in local.integers([1, 1, 3, 3, 1, 1], [4, 5, 20, 20, 5, 4]))
        r = min(r, h, w)
        padding = int(local.integers(0, r))
        x = local.standard_normal((n, c, h, w)).astype(np.float32)
        weight = local.standard_normal((k, c, r, r)).astype(np.float32)
        bias = local.standard_normal(k).astype(np.float32)
        ref.assert_close(ops.conv2d(x, weight, bias, padding=padding),
                         ref.conv2d(x, weight, bias, padding=padding), terms=c * r * r)


def test_convolutions_with_no_input_or_no_output_channels():
    """C = 0: the output is the bias (a sum over nothing); K = 0: an empty output, zero grad_x.
    (Both once divided by zero in the GEMM blocking: SIGFPE.)"""
    x0, w0, b = np.ones((2, 0, 5, 4), np.float32), np.ones((3, 0, 3, 3), np.float32), np.arange(3, dtype=np.float32)
    y = ops.conv2d(x0, w0, b, padding=(0, 1))
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None, None], (2, 3, 3, 4)))
    grad_x, grad_w, grad_b = ops.conv2d_backward(np.ones_like(y), x0, w0, padding=(0, 1))
    assert grad_x.shape == x0.shape and grad_w.shape == w0.shape
    np.testing.assert_array_equal(grad_b, [24, 24, 24])
    x, w = rng.standard_normal((2, 3, 5, 4)).astype(np.float32), np.ones((0, 3, 3, 3), np.float32)
    y = ops.conv2d(x, w)
    assert y.shape == (2, 0, 3, 2)
    grad_x, grad_w, grad_b = ops.conv2d_backward(y, x, w)
    np.testing.assert_array_equal(grad_x, np.zeros_like(x))
    assert grad_w.shape == w.shape and grad_b.shape == (0,)


# A buffer that cannot be had inside a parallel region (the blocked GEMM's packed panels, the
# direct grad_weight's transposed dy) is a MemoryError, not std::terminate: an exception must not
# leave an OpenMP region. The address-space limit is set just above what the process holds once
# its operands exist, so that the kernel's own buffers (9 MB of packed B per thread; 32 MB of dy
# per thread for a 2**18-wide input layer) are what fails; after the limit is lifted the same
# call succeeds and matches the float64 reference (the buffers were left consistent).
OUT_OF_MEMORY = r"""
import resource, sys
import numpy as np
import deepstyle
from deepstyle import ops
sys.path.insert(0, sys.argv[3])
import reference as ref

def address_space():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

deepstyle.set_num_threads(int(sys.argv[2]))
rng = np.random.default_rng(3)
if sys.argv[1] == "gemm":  # blocked driver, K > 80: packed B of 768 x 3072 floats per thread
    a = rng.standard_normal((1024, 768)).astype(np.float32)
    b = rng.standard_normal((768, 4096)).astype(np.float32)
    c = np.empty((1024, 4096), np.float32)
    ops.gemm(a[:200, :200], b[:200, :200])  # worker threads and small buffers exist already
    call = lambda: ops.gemm(a, b, c)
    check = lambda: ref.assert_close(c, ref.gemm(a, b), terms=768)
else:  # the direct grad_weight of an input layer 2**18 positions wide: dy rows of 32 MB
    x = rng.standard_normal((1, 1, 1, 1 << 18)).astype(np.float32)
    w = rng.standard_normal((32, 1, 5, 5)).astype(np.float32)
    gy = rng.standard_normal((1, 32, 1, 1 << 18)).astype(np.float32)
    ops.conv2d_backward(gy[..., :4096], x[..., :4096], w, padding=2, need_x=False)
    out = []
    call = lambda: out.append(ops.conv2d_backward(gy, x, w, padding=2, need_x=False))
    def check():
        _, grad_w, grad_b = out[-1]
        _, ref_w, ref_b = ref.conv2d_backward(gy.astype(np.float64), x, w, padding=2)
        ref.assert_close(grad_w, ref_w, terms=1 << 18)
        ref.assert_close(grad_b, ref_b, terms=1 << 18)
resource.setrlimit(resource.RLIMIT_AS, (address_space() + (4 << 20), resource.RLIM_INFINITY))
try:
    call()
    print("no error")
except MemoryError:
    print("MemoryError")
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
call()
check()
print("then ok")
"""


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kernel", ["gemm", "conv_grad_weight"])
def test_out_of_memory_inside_a_parallel_region_is_a_memory_error(run_python_limited, kernel,
                                                                    threads):
    tests = os.path.dirname(os.path.abspath(__file__))
    result = run_python_limited("-c", OUT_OF_MEMORY, kernel, str(threads), tests)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["MemoryError", "then", "ok"]
