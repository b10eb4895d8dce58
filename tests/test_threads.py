import concurrent.futures
import os

import numpy as np
import pytest

import deepstyle
from deepstyle import _cpu, ops

pytestmark = pytest.mark.usefixtures("restore_threads")


def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# Each threaded kernel on shapes that take each of its parallel paths; every function returns
# its outputs by name.


def gemm_results(rng):
    # Few row blocks (threads split the tiles of one) and many (threads take whole row blocks).
    c = normal(rng, 400, 70)
    return {
        "small": ops.gemm(normal(rng, 50, 300), normal(rng, 300, 90)),
        "large": ops.gemm(normal(rng, 700, 257), normal(rng, 129, 257), trans_b=True),
        "beta": ops.gemm(normal(rng, 300, 400), normal(rng, 300, 70), c, trans_a=True, beta=0.5),
        "shallow": ops.gemm(normal(rng, 13, 75), normal(rng, 75, 5001)),  # unpacked, threaded
        # ... from memory: panels copied as the tiles go, C (2**20 floats or more) streamed
        "shallow copied": ops.gemm(normal(rng, 20, 75), normal(rng, 75, 60016)),
        "shallow one tile": ops.gemm(normal(rng, 5, 40), normal(rng, 40, 70001)),  # prefetched
    }


def conv_results(rng):
    # Batch 1 (threaded GEMM) and batches larger than the thread count (threads over images).
    out = {}
    for n, (k, c, r), stride, padding in [(1, (16, 8, 3), 1, 1), (5, (12, 6, 3), 2, 1),
                                          (5, (10, 7, 1), 1, 0), (3, (8, 4, 5), 1, 2)]:
        x, w, b = normal(rng, n, c, 19, 17), normal(rng, k, c, r, r), normal(rng, k)
        y = ops.conv2d(x, w, b, stride, padding)
        grads = ops.conv2d_backward(normal(rng, *y.shape), x, w, stride, padding)
        for name, value in zip(["y", "grad_x", "grad_weight", "grad_bias"], (y, *grads)):
            out[f"n={n} k={r} {name}"] = value
    # The direct kernels of 32/64 output channels (rows of output positions, taps of grad_weight).
    x, w = normal(rng, 3, 12, 14, 13), normal(rng, 64, 12, 5, 5)
    y = ops.conv2d(x, w, None, 1, 2)
    out["direct y"] = y
    out["direct grad_x"], out["direct grad_weight"], _ = ops.conv2d_backward(
        normal(rng, *y.shape), x, w, 1, 2)
    # cifar-cnn's conv2 and conv3 geometry: grad_weight over rows of whole blocks of 8
    # positions, read from x itself, summed over fixed ranges of rows across image boundaries.
    for shape, k in (((5, 12, 16, 16), 32), ((7, 12, 8, 8), 64)):
        x, w = normal(rng, *shape), normal(rng, k, 12, 5, 5)
        name = f"direct {shape[2]}x{shape[3]}"
        out[f"{name} grad_weight"], out[f"{name} grad_bias"] = ops.conv2d_backward(
            normal(rng, shape[0], k, *shape[2:]), x, w, 1, 2, need_x=False)[1:]
    # An input layer: the forward by rows of positions; grad_weight summed over fixed ranges of
    # rows, across image boundaries.
    x, w = normal(rng, 3, 3, 37, 41), normal(rng, 32, 3, 5, 5)
    out["input layer y"] = ops.conv2d(x, w, None, 1, 2)
    out["input layer grad_weight"] = ops.conv2d_backward(
        normal(rng, 3, 32, 37, 41), x, w, 1, 2, need_x=False, need_bias=False)[1]
    # A shallow input layer through the blocked GEMM, its 2**20-float output streamed.
    x, w, b = normal(rng, 1, 3, 128, 128), normal(rng, 64, 3, 3, 3), normal(rng, 64)
    out["streamed y"] = ops.conv2d(x, w, b, 1, 1)
    # Winograd with few blocks of tiles: threads split the input transform by channel and the
    # rest by output channel, block by block.
    x, w = normal(rng, 2, 20, 70, 45), normal(rng, 40, 20, 3, 3)
    out["winograd y"] = y = ops.conv2d(x, w, None, 1, 1, algo="winograd")
    out["winograd grad_x"] = ops.conv2d_backward(normal(rng, *y.shape), x, w, 1, 1,
                                                 need_weight=False, need_bias=False,
                                                 algo="winograd")[0]
    # F(2x2, 5x5): cifar-cnn's conv2 shape at a smaller batch; 5 blocks of tiles: each thread
    # takes half of the 832 tiles, the second half starting inside a panel of the first.
    x, w = normal(rng, 13, 32, 16, 16), normal(rng, 32, 32, 5, 5)
    out["winograd 5x5 y"] = y = ops.conv2d(x, w, None, 1, 2, algo="winograd")
    out["winograd 5x5 grad_x"] = ops.conv2d_backward(normal(rng, *y.shape), x, w, 1, 2,
                                                     need_weight=False, need_bias=False,
                                                     algo="winograd")[0]
    return out


def pool_results(rng):
    out = {}
    # 33x31 and 16x16 planes: the plane-lane kernels (blocks of planes split across threads);
    # 48x48: the row kernels (planes split across threads); each above the size that is split
    for x in (normal(rng, 6, 16, 33, 31), normal(rng, 3, 45, 16, 16), normal(rng, 2, 8, 48, 48)):
        name = "x".join(map(str, x.shape[2:]))
        y_max, y_avg = ops.max_pool2d(x, 3, 2, 1, True), ops.avg_pool2d(x, 2)
        y_fused, indices = ops.max_pool2d(x, 3, 2, 0, True, return_indices=True, relu_after=True)
        grad_y, grad_fused = normal(rng, *y_max.shape), normal(rng, *y_fused.shape)
        y_2x2, indices_2x2 = ops.max_pool2d(x, 2, return_indices=True)  # tiling 16x16 and 48x48
        out.update({
            f"{name} max": y_max,
            f"{name} max grad": ops.max_pool2d_backward(grad_y, x, 3, 2, 1, True),
            f"{name} avg": y_avg,
            f"{name} avg grad": ops.avg_pool2d_backward(normal(rng, *y_avg.shape), x, 2),
            f"{name} max+relu": y_fused,
            f"{name} max+relu grad": ops.max_pool2d_backward(
                grad_fused, x, 3, 2, 0, True, indices=indices, relu_after=True, y=y_fused),
            f"{name} max idx grad": ops.max_pool2d_backward(grad_fused, x, 3, 2, 0, True,
                                                            indices=indices),
            f"{name} 2x2 idx grad": ops.max_pool2d_backward(normal(rng, *y_2x2.shape), x, 2,
                                                            indices=indices_2x2),
            f"{name} relu+avg": ops.avg_pool2d(x, 3, 2, 0, True, False, relu_before=True),
            f"{name} relu+avg grad": ops.avg_pool2d_backward(grad_fused, x, 3, 2, 0, True, False,
                                                             relu_before=True),
        })
    return out


def gram_results(rng):
    f = normal(rng, 2, 64, 40, 40)  # dot products
    wide = normal(rng, 1, 200, 12, 12)  # the blocked driver's upper triangle, by column slices
    return {"gram": ops.gram(f), "grad": ops.gram_backward(normal(rng, 2, 64, 64), f),
            "wide gram": ops.gram(wide)}


def elementwise_results(rng):
    big = normal(rng, 300_000)  # above the size where the loops go parallel
    return {"sigmoid": ops.sigmoid(big), "tanh grad": ops.tanh_backward(big, ops.tanh(big))}


KERNELS = [gemm_results, conv_results, pool_results, gram_results, elementwise_results]


@pytest.mark.parametrize("results", KERNELS, ids=lambda f: f.__name__.removesuffix("_results"))
def test_one_and_two_threads_give_identical_results(results):
    deepstyle.set_num_threads(1)
    one = results(np.random.default_rng(0))
    deepstyle.set_num_threads(2)
    two = results(np.random.default_rng(0))
    differ = [name for name in one if not np.array_equal(one[name], two[name])]
    assert not differ, f"results differ between 1 and 2 threads: {differ}"


@pytest.mark.parametrize("results", KERNELS, ids=lambda f: f.__name__.removesuffix("_results"))
def test_repeated_runs_give_identical_results(results):
    deepstyle.set_num_threads(2)
    first, second = results(np.random.default_rng(1)), results(np.random.default_rng(1))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_set_and_get_num_threads():
    deepstyle.set_num_threads(1)
    assert deepstyle.get_num_threads() == 1
    deepstyle.set_num_threads(np.int64(3))
    assert deepstyle.get_num_threads() == 3


@pytest.mark.parametrize("bad", [0, -1, -100, 10**6, 2**40])
def test_set_num_threads_rejects_out_of_range_counts(bad):
    deepstyle.set_num_threads(2)
    with pytest.raises(ValueError, match=r"\bn\b.*got"):
        deepstyle.set_num_threads(bad)
    assert deepstyle.get_num_threads() == 2


@pytest.mark.parametrize("bad", [1.5, 2.0, "2", None, True])
def test_set_num_threads_rejects_non_integers(bad):
    with pytest.raises(TypeError, match=r"\bn\b.*got"):
        deepstyle.set_num_threads(bad)


def test_default_is_all_cores(run_python):
    result = run_python("-c", "import deepstyle, deepstyle._cpu as c; "
                        "print(deepstyle.get_num_threads(), c.max_hardware_threads())")
    assert result.returncode == 0, result.stderr
    threads, cores = result.stdout.split()
    assert threads == cores and int(cores) >= 1


@pytest.mark.parametrize("value", ["1", "3", " 2 "])
def test_environment_variable_sets_thread_count(run_python, value):
    result = run_python("-c", "import deepstyle; print(deepstyle.get_num_threads())",
                        env={"DEEPSTYLE_NUM_THREADS": value})
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == int(value)


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "99999"])
def test_environment_variable_bad_value_is_a_clear_error(run_python, value):
    result = run_python("-c", "import deepstyle", env={"DEEPSTYLE_NUM_THREADS": value})
    assert result.returncode == 1  # a Python exception, not a crash
    assert "ValueError: DEEPSTYLE_NUM_THREADS" in result.stderr
    assert repr(value) in result.stderr


def test_max_hardware_threads_is_positive():
    assert _cpu.max_hardware_threads() >= 1


def test_concurrent_calls_from_python_threads_agree_with_serial_calls():
    """The kernels release the GIL, so Python threads can run them at once: no buffer may be
    shared between calls."""
    deepstyle.set_num_threads(2)
    expected = {kernel: kernel(np.random.default_rng(2)) for kernel in KERNELS}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = {kernel: [pool.submit(kernel, np.random.default_rng(2)) for _ in range(3)]
                   for kernel in KERNELS}
        for kernel, runs in futures.items():
            for run in runs:
                got = run.result()
                for name in expected[kernel]:
                    np.testing.assert_array_equal(got[name], expected[kernel][name],
                                                  err_msg=f"{kernel.__name__}: {name}")


def openmp_spin_settings(run_python, env=None):
    """libgomp's wait policy and spin count as it reports them at start-up, and whether
    GOMP_SPINCOUNT is left in the environment after ``import deepstyle``."""
    result = run_python("-c", "import os, deepstyle; print('GOMP_SPINCOUNT' in os.environ)",
                        env={"OMP_DISPLAY_ENV": "verbose", **(env or {})})
    assert result.returncode == 0, result.stderr
    settings = dict(line.strip().replace("'", "").split(" = ", 1)
                    for line in result.stderr.splitlines() if " = " in line)
    return settings.get("OMP_WAIT_POLICY"), settings.get("GOMP_SPINCOUNT"), result.stdout.strip()


def test_idle_openmp_workers_spin_briefly_by_default(run_python):
    if any(name in os.environ for name in deepstyle._SPIN_VARIABLES):
        pytest.skip("this test session's environment chooses the OpenMP wait policy itself")
    _, spin, left_in_environment = openmp_spin_settings(run_python)
    assert spin == deepstyle._BOUNDED_SPIN
    assert left_in_environment == "False"  # child processes see the user's environment


@pytest.mark.parametrize("env, expected", [({"OMP_WAIT_POLICY": "passive"}, "0"),
                                           ({"GOMP_SPINCOUNT": "123"}, "123")])
def test_the_users_openmp_wait_policy_is_kept(run_python, env, expected):
    _, spin, left_in_environment = openmp_spin_settings(run_python, env)
    assert spin == expected
    assert left_in_environment == str("GOMP_SPINCOUNT" in env)
