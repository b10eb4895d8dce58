"""On a real CUDA device (skipped without one): CuPy arrays run on deepstyle._cuda and agree
with the C++ kernels; mixing NumPy and CuPy is an error. Without a device, `--device cuda`
is one clear error line and everything else falls back to the CPU quietly."""

import numpy as np
import pytest

import deepstyle
from deepstyle import backend, ops


def test_cuda_available_is_a_bool_and_never_raises():
    assert deepstyle.cuda_available() in (True, False)


def test_device_cuda_without_a_gpu_is_one_clear_line(run_python, tmp_path):
    if deepstyle.cuda_available():
        pytest.skip("a CUDA device answers here")
    result = run_python("-m", "deepstyle", "paint", "--demo", "--device", "cuda",
                        "--output", str(tmp_path / "out.png"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_numpy_arrays_stay_on_the_cpu_kernels():
    from deepstyle import _cpu

    assert backend.kernels(np.zeros(3, np.float32), None) == (_cpu, np)


@pytest.mark.cuda
def test_cupy_arrays_run_on_the_cuda_kernels():
    import cupy

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((37, 29), np.float32), rng.standard_normal((29, 53), np.float32)
    c = ops.gemm(cupy.asarray(a), cupy.asarray(b))
    assert isinstance(c, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(c), ops.gemm(a, b), rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
def test_mixing_numpy_and_cupy_is_an_error():
    import cupy

    with pytest.raises(TypeError, match="not a mix"):
        ops.gemm(np.zeros((2, 2), np.float32), cupy.zeros((2, 2), cupy.float32))


class _DeviceBufferStandIn:
    """Host memory dressed as a CUDA array (only the interface the bindings read)."""

    def __init__(self, array, typestr="<f4"):
        self.array = array
        self.__cuda_array_interface__ = {"shape": array.shape, "typestr": typestr,
                                         "data": (array.ctypes.data, False), "strides": None,
                                         "version": 3}


def test_cuda_errors_become_exceptions_naming_the_kernel(monkeypatch):
    """Without a device, the real deepstyle._cuda checks its buffers, launches, and turns the
    CUDA error into a RuntimeError naming the kernel: never a crash or a silent result."""
    if deepstyle.cuda_available():
        pytest.skip("a CUDA device answers here: launches would succeed")
    _cuda = pytest.importorskip("deepstyle._cuda", reason="built without nvcc")
    import sys
    import types

    stream = types.SimpleNamespace(ptr=0)  # CuPy's current stream, without CuPy or a driver
    fake_cuda = types.ModuleType("cupy.cuda")
    fake_cuda.get_current_stream = lambda: stream
    fake_cupy = types.ModuleType("cupy")
    fake_cupy.cuda = fake_cuda
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", fake_cuda)

    x, y = (_DeviceBufferStandIn(np.zeros(4, np.float32)) for _ in range(2))
    with pytest.raises(ValueError, match="x: expected 5 elements, got 4"):
        _cuda.relu_forward(x, y, 5)
    with pytest.raises(TypeError, match="x: expected a CuPy array"):
        _cuda.relu_forward(np.zeros(4, np.float32), y, 4)
    with pytest.raises(RuntimeError, match="CUDA error in relu_forward"):
        _cuda.relu_forward(x, y, 4)
    a, b, c = (_DeviceBufferStandIn(np.zeros(s, np.float32)) for s in ((3, 5), (5, 2), (3, 2)))
    with pytest.raises(RuntimeError, match="CUDA error in sgemm"):
        _cuda.gemm(a, b, c, False, False, 3, 2, 5, 1.0, 0.0)
