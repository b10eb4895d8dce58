"""Random calls of every public ``deepstyle.ops`` function: random shapes (empty ones included),
strides, paddings, kernel sizes, dtypes, views (transposed, sliced, reversed, broadcast,
unaligned) and ill-typed arguments. Every call must end in a result or a ValueError/TypeError
whose message starts with an argument's name; small valid calls are checked against the float64
reference. Run by tests/test_ops_fuzz.py in a subprocess under a 4 GB address-space limit (a
crash or hang is then a failed test, not a dead test run); by hand:

    PYTHONPATH=python:tests python tests/fuzz_ops.py --seconds 60 --seed 7

Before each call its description goes to stderr, so a crash names the call that caused it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

import reference as ref
from deepstyle import ops

DTYPES = [np.float32] * 6 + [np.float64, np.float16, np.int32, np.uint8, np.bool_, np.complex64, object]
SIZES = [0, 1, 1, 2, 3, 3, 4, 5, 7, 8]
GEOMETRY = [1, 1, 1, 2, 2, 3, (1, 2), (2, 1), 0, -1, 2**40 + 1, 2**62, 2**63, 10**6, True, 1.5, "2", None,
            (1,), (1, 2, 3), np.int64(2), np.uint64(2**63)]
PADDINGS = [0, 0, 0, 1, 1, 2, (0, 1), 3, 40, -1, 2**39, 2**63, False, 0.5, "1", (1, None)]
NAMES = {name for name, fn in vars(ops).items() if callable(fn)} | {
    "x", "weight", "bias", "grad_y", "grad_g", "a", "b", "c", "y", "logits", "labels", "stride", "padding",
    "kernel_size", "trans_a", "trans_b", "alpha", "beta", "negative_slope", "algo", "ceil_mode",
    "count_include_pad", "need_x", "need_weight", "need_bias"}


class Fuzzer:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def shape(self, ndim, fixed=None):
        shape = [self.pick(SIZES) for _ in range(ndim)]
        for axis, size in (fixed or {}).items():
            shape[axis] = size
        return tuple(shape)

    def array(self, shape, clean=False):
        """An array of ``shape``: float32 and contiguous when ``clean``, else of a random dtype
        and memory layout (the values stay those of a float32 array where the dtype allows)."""
        values = self.rng.standard_normal(shape).astype(np.float32)
        if clean or self.rng.random() < 0.5:
            return values
        dtype = self.pick(DTYPES)
        values = values.astype(dtype) if dtype is not object else values.astype(object)
        layout = self.pick(["transposed", "sliced", "reversed", "broadcast", "unaligned", "fortran", "list"])
        if layout == "transposed" and values.ndim >= 2:
            return np.ascontiguousarray(np.swapaxes(values, -1, -2)).swapaxes(-1, -2)
        if layout == "sliced":
            big = np.repeat(values, 2, axis=-1) if values.ndim else values
            return big[..., ::2] if values.ndim else big
        if layout == "reversed" and values.ndim:
            return np.ascontiguousarray(values[..., ::-1])[..., ::-1]
        if layout == "broadcast" and values.ndim and values.size:
            return np.broadcast_to(values.reshape(-1)[:1].reshape((1,) * values.ndim), shape)
        if layout == "unaligned" and values.dtype.kind == "f" and values.dtype != object:
            raw = np.zeros(values.nbytes + 1, np.uint8)
            view = raw[1:].view(values.dtype).reshape(shape)
            view[...] = values
            return view
        if layout == "fortran":
            return np.asfortranarray(values)
        if layout == "list":
            return values.tolist()
        return values

    def flag(self):
        return self.pick([True, False, True, False, np.bool_(True), "no", 1, None])

    def call(self):
        """(description, function, args, kwargs, reference or None) of one random call."""
        kind = self.pick(["conv", "conv_backward", "pool", "pool_backward", "gram", "gram_backward", "gemm",
                          "activation", "activation_backward", "loss"])
        clean = self.rng.random() < 0.5  # valid types and layouts, so the result is checked more often
        rng = self.rng
        if kind in ("conv", "conv_backward"):
            n, c, h, w = self.shape(4)
            k, r, s = self.pick(SIZES), self.pick([1, 2, 3, 3, 5]), self.pick([1, 2, 3, 3])
            stride = self.pick(GEOMETRY) if not clean else self.pick([1, 1, 2, (1, 2)])
            padding = self.pick(PADDINGS) if not clean else self.pick([0, 1, 2, (0, 1)])
            algo = self.pick(["auto", "auto", "direct", "winograd", "fft", 3])
            x, weight = self.array((n, c, h, w), clean), self.array((k, c, r, s), clean)
            if kind == "conv":
                bias = self.pick([None, self.array((k,), clean), self.array((k + 1,), clean)])
                return kind, ops.conv2d, (x, weight, bias, stride, padding), {"algo": algo}, (
                    lambda: ref.conv2d(x, weight, bias, stride, padding), c * r * s * 100)
            try:
                out = ops.conv2d_output_size((h, w), (r, s), stride, padding)
            except (ValueError, TypeError):
                out = (1, 1)
            grad_y = self.array((n, k, max(out[0], 0) if out[0] < 64 else 1, max(out[1], 0) if out[1] < 64 else 1), clean)
            flags = {name: self.flag() if not clean else bool(rng.random() < 0.8)
                     for name in ("need_x", "need_weight", "need_bias")}
            return kind, ops.conv2d_backward, (grad_y, x, weight, stride, padding), {"algo": algo, **flags}, (
                lambda: ref.conv2d_backward(grad_y, x, weight, stride, padding), (k + c) * r * s * 100 * max(1, n * h * w))
        if kind in ("pool", "pool_backward"):
            n, c, h, w = self.shape(4)
            kernel = self.pick([1, 2, 2, 3, (2, 3), 4]) if clean else self.pick(GEOMETRY)
            stride = self.pick([None, 1, 2, 3]) if clean else self.pick([None] + GEOMETRY)
            padding = self.pick([0, 0, 1]) if clean else self.pick(PADDINGS)
            ceil_mode = self.flag() if not clean else bool(rng.random() < 0.5)
            is_max = rng.random() < 0.5
            x = self.array((n, c, h, w), clean)
            extra = () if is_max else (self.flag() if not clean else True,)
            if kind == "pool":
                fn, reference = (ops.max_pool2d, ref.max_pool2d) if is_max else (ops.avg_pool2d, ref.avg_pool2d)
                args = (x, kernel, stride, padding, ceil_mode, *extra)
                return kind, fn, args, {}, (lambda: reference(*args), 64)
            try:
                out = ops.pool2d_output_size((h, w), kernel, stride, padding, ceil_mode is True)
            except (ValueError, TypeError):
                out = (1, 1)
            grad_y = self.array((n, c, min(max(out[0], 0), 64), min(max(out[1], 0), 64)), clean)
            fn, reference = ((ops.max_pool2d_backward, ref.max_pool2d_backward) if is_max
                             else (ops.avg_pool2d_backward, ref.avg_pool2d_backward))
            args = (grad_y, x, kernel, stride, padding, ceil_mode, *extra)
            return kind, fn, args, {}, (None if is_max else lambda: reference(*args), 64)  # max: ties
        if kind in ("gram", "gram_backward"):
            x = self.array(self.shape(self.pick([4, 4, 4, 3])), clean)
            if kind == "gram":
                return kind, ops.gram, (x,), {}, (lambda: ref.gram(x), np.size(x) + 1)
            shape = np.shape(x)
            grad_g = self.array((shape[0], shape[1], shape[1]) if len(shape) == 4 else (1, 1, 1), clean)
            return kind, ops.gram_backward, (grad_g, x), {}, (lambda: ref.gram_backward(grad_g, x), np.size(x) + 1)
        if kind == "gemm":
            m, k, n = self.pick(SIZES), self.pick(SIZES), self.pick(SIZES)
            trans_a, trans_b = (self.flag(), self.flag()) if not clean else (bool(rng.random() < .5), bool(rng.random() < .5))
            a = self.array((k, m) if trans_a is True else (m, k), clean)
            b = self.array((n, k) if trans_b is True else (k, n), clean)
            c = self.pick([None, None, self.array((m, n), True), self.array((m, n + 1), True), "c"])
            alpha = self.pick([1.0, 0.5, -2, True, "1", np.float32(2)]) if not clean else 1.5
            beta = self.pick([0.0, 1.0, 0.5]) if c is not None else 0.0
            kwargs = {"trans_a": trans_a, "trans_b": trans_b, "alpha": alpha, "beta": beta}
            c0 = None if not isinstance(c, np.ndarray) else c.copy()
            return kind, ops.gemm, (a, b, c), kwargs, (
                lambda: ref.gemm(a, b, c0, trans_a, trans_b, alpha, beta), k + 2)
        if kind in ("activation", "activation_backward"):
            name = self.pick(["relu", "leaky_relu", "sigmoid", "tanh"])
            x = self.array(self.shape(int(rng.integers(0, 5))), clean)
            scalars = (self.pick([0.01, 0.2, -1.0, True, "0.1"]),) if name == "leaky_relu" else ()
            if kind == "activation":
                return f"{kind} {name}", getattr(ops, name), (x, *scalars), {}, (
                    lambda: getattr(ref, name)(x, *scalars), 4)
            grad_y = self.array(np.shape(x) if rng.random() < 0.9 else (3,), clean)
            return f"{kind} {name}", getattr(ops, name + "_backward"), (grad_y, x, *scalars), {}, (
                lambda: getattr(ref, name + "_backward")(grad_y, x, *scalars), 4)
        n, k = self.pick(SIZES), self.pick(SIZES)
        logits = self.array((n, k), clean)
        labels = self.pick([rng.integers(0, max(k, 1), n), rng.integers(-2, k + 2, n), np.zeros(n, np.float32),
                            rng.integers(0, max(k, 1), n + 1), [0] * n])
        return kind, ops.softmax_cross_entropy, (logits, labels), {}, (
            lambda: ref.softmax_cross_entropy(np.asarray(logits, np.float32), np.asarray(labels)), k + 4)


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"array{value.shape}:{value.dtype}:{'C' if value.flags.c_contiguous else 'strided'}"
    if isinstance(value, list):
        return f"list(len {len(value)})"
    return repr(value)[:60]


def _is_plain(value):
    """A float32 C-contiguous ndarray, None, or a plain scalar/tuple: what the reference takes."""
    if isinstance(value, np.ndarray):
        return value.dtype == np.float32 and value.flags.c_contiguous
    return not isinstance(value, (str, list))


def check_result(result, reference, terms):
    expected = reference()
    results = result if isinstance(result, tuple) else (result,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for got, want in zip(results, expected):
        if got is None:
            continue
        if isinstance(got, float):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        else:
            ref.assert_close(got, want, terms=terms)


def run(seconds, seed, max_calls):
    fuzzer = Fuzzer(seed)
    counts = {"ok": 0, "checked": 0, "ValueError": 0, "TypeError": 0}
    failures = []
    deadline = time.monotonic() + seconds
    calls = 0
    while time.monotonic() < deadline and calls < max_calls:
        calls += 1
        kind, fn, args, kwargs, (reference, terms) = fuzzer.call()
        description = f"{fn.__name__}({', '.join(map(_describe, args))}, " \
                      f"{', '.join(f'{k}={_describe(v)}' for k, v in kwargs.items())})"
        print(description, file=sys.stderr, flush=True)
        try:
            result = fn(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            counts[type(exc).__name__] += 1
            message = str(exc)
            name = message.split(":", 1)[0]
            if "\n" in message or name not in NAMES or len(message) > 400:
                failures.append(f"{description}: unclear {type(exc).__name__}: {message[:300]!r}")
            continue
        except BaseException as exc:  # noqa: BLE001 -- anything else is the bug being looked for
            failures.append(f"{description}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        counts["ok"] += 1
        plain = all(_is_plain(a) for a in args) and all(
            _is_plain(v) and not isinstance(v, (np.bool_, str)) and type(v) is not int or k == "algo"
            for k, v in kwargs.items() if k in ("trans_a", "trans_b", "alpha", "ceil_mode"))
        if reference is not None and plain and kwargs.get("algo", "auto") in ("auto", "direct", "winograd"):
            try:
                check_result(result, reference, terms)
                counts["checked"] += 1
            except AssertionError as exc:
                failures.append(f"{description}: wrong result: {str(exc)[:400]}")
            except Exception:  # noqa: BLE001 -- the reference itself cannot take these arguments
                pass
    return {"calls": calls, "counts": counts, "failures": failures[:20], "failure_count": len(failures)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-calls", type=int, default=10**9)
    parser.add_argument("--address-space-gb", type=float, default=4.0)
    args = parser.parse_args()
    limit = int(args.address_space_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print(json.dumps(run(args.seconds, args.seed, args.max_calls)))


if __name__ == "__main__":
    main()
