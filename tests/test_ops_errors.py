"""Bad input raises ValueError or TypeError whose message names the argument and says what was
expected and what came instead; never a crash or a silent wrong answer."""

import numpy as np
import pytest

from deepstyle import _cpu, ops

x4 = np.zeros((2, 3, 8, 8), np.float32)
w4 = np.zeros((4, 3, 3, 3), np.float32)
gy_conv = np.zeros((2, 4, 6, 6), np.float32)
gy_pool = np.zeros((2, 3, 4, 4), np.float32)
a23, b34 = np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32)
logits = np.zeros((3, 5), np.float32)

# (id, exception, argument the message must name, call)
CASES = [
    # number of dimensions
    ("conv x 3-D", ValueError, "x", lambda: ops.conv2d(x4[0], w4)),
    ("conv weight 2-D", ValueError, "weight", lambda: ops.conv2d(x4, w4[0, 0])),
    ("conv backward x 5-D", ValueError, "x", lambda: ops.conv2d_backward(gy_conv, x4[None], w4)),
    ("pool x 3-D", ValueError, "x", lambda: ops.max_pool2d(x4[0], 2)),
    ("avg pool x 2-D", ValueError, "x", lambda: ops.avg_pool2d(x4[0, 0], 2)),
    ("gram x 3-D", ValueError, "x", lambda: ops.gram(x4[0])),
    ("gemm a 1-D", ValueError, "a", lambda: ops.gemm(np.zeros(3), b34)),
    ("gemm b 3-D", ValueError, "b", lambda: ops.gemm(a23, b34[None])),
    ("loss logits 1-D", ValueError, "logits", lambda: ops.softmax_cross_entropy(np.zeros(5), [1])),
    # channels and sizes
    ("conv channel mismatch", ValueError, "weight", lambda: ops.conv2d(x4, np.zeros((4, 2, 3, 3)))),
    ("conv kernel > padded input", ValueError, "weight",
     lambda: ops.conv2d(x4, np.zeros((4, 3, 11, 3)), padding=1)),
    ("conv empty kernel", ValueError, "weight", lambda: ops.conv2d(x4, np.zeros((4, 3, 0, 3)))),
    ("pool kernel > padded input", ValueError, "kernel_size",
     lambda: ops.max_pool2d(x4, (2, 12), padding=(0, 1))),
    ("avg pool kernel > input", ValueError, "kernel_size", lambda: ops.avg_pool2d(x4, 9)),
    ("pool empty map", ValueError, "x", lambda: ops.max_pool2d(np.zeros((1, 1, 0, 4)), 2, padding=1)),
    ("gram empty map", ValueError, "x", lambda: ops.gram(np.zeros((1, 3, 4, 0)))),
    # stride, padding, kernel_size
    ("conv stride 0", ValueError, "stride", lambda: ops.conv2d(x4, w4, stride=0)),
    ("conv stride negative", ValueError, "stride", lambda: ops.conv2d(x4, w4, stride=(1, -2))),
    ("conv padding negative", ValueError, "padding", lambda: ops.conv2d(x4, w4, padding=-1)),
    ("conv stride float", TypeError, "stride", lambda: ops.conv2d(x4, w4, stride=1.5)),
    ("conv stride triple", TypeError, "stride", lambda: ops.conv2d(x4, w4, stride=(1, 1, 1))),
    ("conv padding bool", TypeError, "padding", lambda: ops.conv2d(x4, w4, padding=True)),
    ("conv backward stride 0", ValueError, "stride",
     lambda: ops.conv2d_backward(gy_conv, x4, w4, stride=0)),
    ("pool stride 0", ValueError, "stride", lambda: ops.max_pool2d(x4, 2, stride=0)),
    ("avg pool stride negative", ValueError, "stride", lambda: ops.avg_pool2d(x4, 2, stride=-1)),
    ("pool padding negative", ValueError, "padding", lambda: ops.max_pool2d(x4, 3, padding=-1)),
    ("pool padding over half kernel", ValueError, "padding",
     lambda: ops.avg_pool2d(x4, 3, padding=2)),
    ("pool kernel 0", ValueError, "kernel_size", lambda: ops.max_pool2d(x4, 0)),
    ("pool kernel string", TypeError, "kernel_size", lambda: ops.max_pool2d(x4, "3")),
    # gradients and bias of the wrong shape
    ("conv bias shape", ValueError, "bias", lambda: ops.conv2d(x4, w4, np.zeros(3))),
    ("conv bias 2-D", ValueError, "bias", lambda: ops.conv2d(x4, w4, np.zeros((4, 1)))),
    ("conv grad_y shape", ValueError, "grad_y", lambda: ops.conv2d_backward(gy_conv[:, :3], x4, w4)),
    ("conv grad_y stride", ValueError, "grad_y",
     lambda: ops.conv2d_backward(gy_conv, x4, w4, stride=2)),
    ("max pool grad_y shape", ValueError, "grad_y",
     lambda: ops.max_pool2d_backward(gy_pool[:, :, :3], x4, 2)),
    ("avg pool grad_y floor", ValueError, "grad_y",  # (8 - 3) // 2 + 1 = 3 rows, not 4
     lambda: ops.avg_pool2d_backward(gy_pool, x4, 3, 2, ceil_mode=False)),
    ("gram grad_g shape", ValueError, "grad_g", lambda: ops.gram_backward(np.zeros((2, 3, 4)), x4)),
    ("relu grad_y shape", ValueError, "grad_y", lambda: ops.relu_backward(np.zeros(4), np.zeros(5))),
    ("sigmoid grad_y shape", ValueError, "grad_y",
     lambda: ops.sigmoid_backward(np.zeros((2, 3)), np.zeros((3, 2)))),
    ("tanh grad_y shape", ValueError, "grad_y", lambda: ops.tanh_backward(np.ones(1), np.ones(()))),
    ("leaky grad_y shape", ValueError, "grad_y",
     lambda: ops.leaky_relu_backward(np.zeros(3), np.zeros(2))),
    # gemm
    ("gemm inner mismatch", ValueError, "b", lambda: ops.gemm(a23, b34.T)),
    ("gemm inner mismatch trans", ValueError, "b", lambda: ops.gemm(a23, b34, trans_a=True)),
    ("gemm c shape", ValueError, "c", lambda: ops.gemm(a23, b34, np.zeros((4, 2), np.float32))),
    ("gemm c float64", TypeError, "c", lambda: ops.gemm(a23, b34, np.zeros((2, 4)))),
    ("gemm c not contiguous", TypeError, "c",
     lambda: ops.gemm(a23, b34, np.zeros((4, 2), np.float32).T)),
    ("gemm c read-only", TypeError, "c",
     lambda: ops.gemm(a23, b34, np.broadcast_to(np.float32(0), (2, 4)))),
    ("gemm c list", TypeError, "c", lambda: ops.gemm(a23, b34, [[0.0] * 4] * 2)),
    ("gemm c is a", ValueError, "c", lambda a=np.ones((3, 3), np.float32): ops.gemm(a, a, a)),
    ("gemm c inside b", ValueError, "c",
     lambda b=np.ones((4, 4), np.float32): ops.gemm(np.ones((2, 4)), b, b[2:])),
    ("gemm alpha None", TypeError, "alpha", lambda: ops.gemm(a23, b34, alpha=None)),
    ("gemm beta string", TypeError, "beta", lambda: ops.gemm(a23, b34, beta="1")),
    ("leaky slope string", TypeError, "negative_slope", lambda: ops.leaky_relu(a23, "0.1")),
    # dtypes and types
    ("conv x strings", TypeError, "x", lambda: ops.conv2d(np.full((1, 1, 3, 3), "a"), w4)),
    ("conv weight complex", TypeError, "weight",
     lambda: ops.conv2d(x4, w4.astype(np.complex64))),
    ("relu bool", TypeError, "x", lambda: ops.relu(np.array([True, False]))),
    ("relu object", TypeError, "x", lambda: ops.relu(np.array([None, 1.0]))),
    ("relu None", TypeError, "x", lambda: ops.relu(None)),
    ("sigmoid dict", TypeError, "x", lambda: ops.sigmoid({"a": 1})),
    ("gram string", TypeError, "x", lambda: ops.gram("features")),
    ("gemm a string", TypeError, "a", lambda: ops.gemm("ab", b34)),
    ("loss logits object", TypeError, "logits",
     lambda: ops.softmax_cross_entropy(logits.astype(object), [0, 1, 2])),
    # labels
    ("label too large", ValueError, "labels",
     lambda: ops.softmax_cross_entropy(logits, np.array([0, 5, 1]))),
    ("label negative", ValueError, "labels",
     lambda: ops.softmax_cross_entropy(logits, np.array([0, -1, 1]))),
    ("label huge unsigned", ValueError, "labels",
     lambda: ops.softmax_cross_entropy(logits, np.array([0, 2**63 + 1, 1], np.uint64))),
    ("labels float", TypeError, "labels",
     lambda: ops.softmax_cross_entropy(logits, np.array([0.0, 1.0, 2.0]))),
    ("labels bool", TypeError, "labels",
     lambda: ops.softmax_cross_entropy(logits, np.array([True, False, True]))),
    ("labels None", TypeError, "labels", lambda: ops.softmax_cross_entropy(logits, None)),
    ("labels shape", ValueError, "labels",
     lambda: ops.softmax_cross_entropy(logits, np.zeros((3, 1), int))),
    ("labels count", ValueError, "labels",
     lambda: ops.softmax_cross_entropy(logits, np.zeros(4, int))),
    ("empty logits", ValueError, "logits",
     lambda: ops.softmax_cross_entropy(np.zeros((0, 5)), np.zeros(0, int))),
    # flags and numbers of the wrong type (a string such as 'no' must not read as True)
    ("gemm trans_a string", TypeError, "trans_a", lambda: ops.gemm(a23, a23, trans_a="no")),
    ("gemm trans_b int", TypeError, "trans_b", lambda: ops.gemm(a23, b34, trans_b=1)),
    ("pool ceil_mode string", TypeError, "ceil_mode", lambda: ops.max_pool2d(x4, 2, ceil_mode="yes")),
    ("avg pool count_include_pad None", TypeError, "count_include_pad",
     lambda: ops.avg_pool2d(x4, 2, count_include_pad=None)),
    ("conv backward need_x string", TypeError, "need_x",
     lambda: ops.conv2d_backward(gy_conv, x4, w4, need_x="False")),
    ("leaky relu bool slope", TypeError, "negative_slope", lambda: ops.leaky_relu(x4, True)),
    ("leaky relu backward bool slope", TypeError, "negative_slope",
     lambda: ops.leaky_relu_backward(x4, x4, np.bool_(False))),
    ("gemm bool alpha", TypeError, "alpha", lambda: ops.gemm(a23, b34, alpha=True)),
    ("gemm alpha beyond float", ValueError, "alpha", lambda: ops.gemm(a23, b34, alpha=10**400)),
    ("leaky relu slope beyond float", ValueError, "negative_slope",
     lambda: ops.leaky_relu(x4, -(10**400))),
    # sizes beyond any array (2**63 would not even fit the kernels' int64)
    ("conv stride 2**63", ValueError, "stride", lambda: ops.conv2d(x4, w4, stride=2**63)),
    ("conv padding 2**70", ValueError, "padding", lambda: ops.conv2d(x4, w4, padding=(0, 2**70))),
    ("pool kernel 2**64", ValueError, "kernel_size", lambda: ops.max_pool2d(x4, 2**64)),
    ("pool stride numpy 2**63", ValueError, "stride", lambda: ops.avg_pool2d(x4, 2, np.uint64(2**63))),
    ("conv output too large", ValueError, "padding", lambda: ops.conv2d(x4, w4, padding=2**39)),
]


@pytest.mark.parametrize("exception,name,call", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_is_a_clear_error(exception, name, call):
    with pytest.raises(exception) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{name}: "), f"message does not start with {name!r}: {message}"
    assert "expected" in message or "must" in message, f"message says nothing expected: {message}"


def test_messages_give_expected_and_actual_values():
    with pytest.raises(ValueError, match=r"weight.*3 input channels.*\(4, 2, 3, 3\)"):
        ops.conv2d(x4, np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"labels.*\[0, 4\].*got 5"):
        ops.softmax_cross_entropy(logits, np.array([0, 5, 1]))
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 4, 6, 6\), got \(2, 3, 6, 6\)"):
        ops.conv2d_backward(gy_conv[:, :3], x4, w4)
    with pytest.raises(ValueError, match=r"op\(a\) of shape 2x3, got op\(b\) of shape 4x3"):
        ops.gemm(a23, b34.T)
    with pytest.raises(ValueError, match=r"stride: expected positive values, got 0"):
        ops.conv2d(x4, w4, stride=0)


def test_failed_call_leaves_c_untouched():
    c = np.full((2, 4), 7.0, np.float32)
    with pytest.raises(ValueError):
        ops.gemm(a23, b34.T, c)
    np.testing.assert_array_equal(c, 7.0)


def _f32(*shape):
    return np.zeros(shape, np.float32)


def _read_only(*shape):
    array = _f32(*shape)
    array.flags.writeable = False
    return array


_x, _w = _f32(1, 2, 5, 5), _f32(3, 2, 3, 3)
# Geometry tuples in the field order of ds::Conv2dShape / ds::Pool2dShape.
_conv = (1, 2, 5, 5, 3, 3, 3, 1, 1, 0, 0, 3, 3)
_pool = (1, 2, 5, 5, 2, 2, 2, 2, 0, 0, 2, 2)
COMPILED_CALLS = {
    "conv weight size": lambda: _cpu.conv2d_forward(_x, _f32(3, 4, 3, 3), None, _f32(1, 3, 3, 3), _conv),
    "conv output too large": lambda: _cpu.conv2d_forward(
        _x, _w, None, _f32(1, 3, 4, 3), (1, 2, 5, 5, 3, 3, 3, 1, 1, 0, 0, 4, 3)),
    # A short P or Q keeps every window inside x, but the Winograd and flipped stride-1 grad_x
    # kernels take the whole output (Winograd once wrote the 3x3 of this one into a 2x2 y).
    "conv output short": lambda: _cpu.conv2d_forward(
        _x, _w, None, _f32(1, 3, 2, 2), (1, 2, 5, 5, 3, 3, 3, 1, 1, 0, 0, 2, 2), 2),
    "conv grad output short": lambda: _cpu.conv2d_backward(
        _f32(1, 3, 3, 2), _x, _w, _f32(1, 2, 5, 5), None, None,
        (1, 2, 5, 5, 3, 3, 3, 1, 1, 0, 0, 3, 2), 2),
    "conv bias": lambda: _cpu.conv2d_forward(_x, _w, _f32(2), _f32(1, 3, 3, 3), _conv),
    "conv stride": lambda: _cpu.conv2d_forward(
        _x, _w, None, _f32(1, 3, 3, 3), (1, 2, 5, 5, 3, 3, 3, 0, 1, 0, 0, 3, 3)),
    "conv grad_y": lambda: _cpu.conv2d_backward(_f32(5), _x, _w, None, None, None, _conv),
    "conv grad_x": lambda: _cpu.conv2d_backward(_f32(1, 3, 3, 3), _x, _w, _f32(3), None, None,
                                                _conv),
    "conv algo": lambda: _cpu.conv2d_forward(_x, _w, None, _f32(1, 3, 3, 3), _conv, 3),
    "conv grad algo": lambda: _cpu.conv2d_backward(_f32(1, 3, 3, 3), _x, _w, _f32(1, 2, 5, 5),
                                                   None, None, _conv, -1),
    "pool indices size": lambda: _cpu.max_pool2d_forward_indices(
        _x, _f32(1, 2, 2, 2), np.zeros((1, 2, 2, 1), np.int32), _pool),
    "pool indices dtype": lambda: _cpu.max_pool2d_backward_indices(
        _f32(1, 2, 2, 2), np.zeros((1, 2, 2, 2), np.int64), _f32(1, 2, 5, 5), _pool),
    "pool index outside": lambda: _cpu.max_pool2d_backward_indices(
        _f32(1, 2, 2, 2), np.full((1, 2, 2, 2), 25, np.int32), _f32(1, 2, 5, 5), _pool),
    "pool windows past input": lambda: _cpu.max_pool2d_forward(
        _x, _f32(1, 2, 4, 2), (1, 2, 5, 5, 2, 2, 2, 2, 0, 0, 4, 2)),
    "pool grad_y": lambda: _cpu.avg_pool2d_backward(_f32(3), _f32(1, 2, 5, 5), _pool, True),
    "gram grad_g": lambda: _cpu.gram_backward(_f32(1, 2, 3), _x, _f32(1, 2, 5, 5), 1, 2, 25),
    "relu grad_y": lambda: _cpu.relu_backward(_f32(3), _f32(4), _f32(4), 4),
    "read-only output": lambda: _cpu.relu_forward(_f32(4), _read_only(4), 4),
    "gemm shapes": lambda: _cpu.gemm(_f32(2, 3), _f32(4, 5), _f32(2, 5), False, False, 2, 5, 3,
                                     1.0, 0.0),
    "label out of range": lambda: _cpu.softmax_cross_entropy(_f32(2, 3), np.array([0, 3]),
                                                             _f32(2, 3), 2, 3),
    "label count": lambda: _cpu.softmax_cross_entropy(_f32(2, 3), np.array([0]), _f32(2, 3), 2, 3),
}


@pytest.mark.parametrize("call", COMPILED_CALLS.values(), ids=COMPILED_CALLS.keys())
def test_compiled_module_checks_buffers_itself(call):
    """deepstyle._cpu is reachable without ops' checks; inconsistent buffers are an error there
    too, never an out-of-bounds read or write."""
    with pytest.raises((ValueError, TypeError)):
        call()


def test_a_raw_thread_count_beyond_the_limit_is_clamped(restore_threads):
    """deepstyle.set_num_threads refuses 100000 with a clear error; the raw binding clamps it,
    so the next kernel does not make libgomp overflow its stack creating the threads."""
    _cpu.set_num_threads(100000)
    assert _cpu.get_num_threads() == 1024
    _cpu.set_num_threads(2)
    assert ops.relu(np.ones(1000, np.float32)).sum() == 1000
