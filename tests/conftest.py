import os
import subprocess
import sys

import pytest

import deepstyle


@pytest.fixture
def run_python():
    """Run ``python -c CODE`` (or ``python -m ...`` via args) in a fresh interpreter that imports
    the same deepstyle as this test session, with extra environment variables."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(deepstyle.__file__)))

    def run(*args, env=None):
        full_env = {k: v for k, v in os.environ.items() if k != "DEEPSTYLE_NUM_THREADS"}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p]
        )
        full_env.update(env or {})
        return subprocess.run([sys.executable, *args], env=full_env, capture_output=True,
                              text=True, timeout=60)

    return run


@pytest.fixture
def restore_threads():
    """Put the thread count back after a test that changes it."""
    saved = deepstyle.get_num_threads()
    yield
    deepstyle.set_num_threads(saved)


@pytest.fixture
def torch_single_threaded(restore_threads):
    """PyTorch, with it and us on one thread each: two OpenMP runtimes waking their threads
    for thousands of tiny calls only wait on each other."""
    torch = pytest.importorskip("torch")
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    deepstyle.set_num_threads(1)
    yield torch
    torch.set_num_threads(saved)


@pytest.fixture(autouse=True)
def no_user_weights(tmp_path_factory, monkeypatch):
    """Tests see neither the user's cache folder nor $DEEPSTYLE_WEIGHTS: a machine where
    `deepstyle weights fetch` was run must give the same results as a fresh one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("empty-cache")))
    monkeypatch.delenv("DEEPSTYLE_WEIGHTS", raising=False)


# AddressSanitizer reserves terabytes of address space for its shadow memory, so the tests that
# bound a subprocess's address space cannot run under scripts/sanitize.sh.
UNDER_ADDRESS_SANITIZER = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.fixture
def run_python_limited(run_python):
    """run_python, for code that sets RLIMIT_AS itself: skipped under AddressSanitizer."""
    if UNDER_ADDRESS_SANITIZER:
        pytest.skip("an address-space limit cannot apply under AddressSanitizer")
    return run_python


# --- backends ---------------------------------------------------------------------------------
# Tests marked `cuda` need a real CUDA device (and CuPy): they skip without one. Where one
# answers, every test of the test_ops_* modules (bar the error-message ones) runs twice, on the
# C++ kernels and on the CUDA kernels: its NumPy arguments go to the GPU and the results come
# back, so the same float64 references judge both. The modules of EMULATED_OPS_MODULES also run
# a third time on the GPU stand-in of tests/fake_cupy.py, i.e. on the CUDA kernels emulated on
# the CPU, for their cases of at most EMULATED_MAX_ELEMENTS elements per array (the emulation
# runs each CUDA thread as an OS thread).
# (test_ops_pool is left out: its 400 cases took 40 s emulated; test_cuda_emulated.py covers
# every pooling option there on small awkward shapes.)
EMULATED_OPS_MODULES = {"test_ops_activations", "test_ops_updates", "test_ops_loss", "test_ops_gemm",
                        "test_ops_gram", "test_ops_conv"}
EMULATED_MAX_ELEMENTS = 1 << 14


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device and CuPy (skipped without)")


def pytest_collection_modifyitems(config, items):
    if deepstyle.cuda_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device (deepstyle.cuda_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    module = metafunc.module.__name__
    if not module.startswith("test_ops_") or module == "test_ops_errors":
        return
    devices = (["cuda"] if deepstyle.cuda_available() else []) + \
        (["emulated"] if module in EMULATED_OPS_MODULES else [])
    if devices:
        metafunc.fixturenames.append("ops_device")
        metafunc.parametrize("ops_device", ["cpu"] + devices, indirect=True)


@pytest.fixture(autouse=True)
def ops_device(request, monkeypatch):
    """For "cuda" (CuPy) and "emulated" (the GPU stand-in): deepstyle.ops' functions wrapped to
    run on device copies of their NumPy arguments, copying the results and any argument
    written in place (gemm's c, the optimiser updates' buffers) back. Autouse, because a test
    that does not name the fixture would otherwise get the parameter without the fixture."""
    device = getattr(request, "param", "cpu")
    if device == "cpu":
        return device
    if device == "cuda":
        import cupy as xp
    else:
        xp = request.getfixturevalue("fake_gpu")
    import numpy as np

    from deepstyle import ops

    def to_host(value):
        if isinstance(value, tuple):
            return tuple(to_host(v) for v in value)
        return xp.asnumpy(value) if isinstance(value, xp.ndarray) else value

    def to_device(value):
        return xp.asarray(value) if isinstance(value, np.ndarray) else value

    def on_device(fn):
        def call(*args, **kwargs):
            if kwargs.get("return_indices") or kwargs.get("indices") is not None:
                pytest.skip("max pooling's indices are a CPU-only feature (the CUDA "
                            "backward finds the maxima again)")
            if device == "emulated" and any(
                    getattr(a, "size", 0) > EMULATED_MAX_ELEMENTS for a in (*args, *kwargs.values())):
                pytest.skip(f"more than {EMULATED_MAX_ELEMENTS} elements: too slow for the "
                            f"emulation (one OS thread per CUDA thread)")
            moved = [to_device(a) for a in args]
            moved_kwargs = {k: to_device(v) for k, v in kwargs.items()}
            result = fn(*moved, **moved_kwargs)
            pairs = list(zip(args, moved)) + [(kwargs[k], moved_kwargs[k]) for k in kwargs]
            for original, copy in pairs:  # outputs written in place
                if copy is not original and original.flags.writeable:
                    original[...] = xp.asnumpy(copy)
            for original, copy in pairs:  # an output written in place is returned as itself
                if result is copy:
                    return original
            return to_host(result)
        return call

    for name in ops.__all__:
        if not name.endswith("_output_size"):
            monkeypatch.setattr(ops, name, on_device(getattr(ops, name)))
    return device


@pytest.fixture
def fake_gpu(monkeypatch):
    """A GPU stand-in for this test: ``fake_cupy`` arrays run on the CUDA kernels emulated on
    the CPU (deepstyle._cuda_emulated) and ``device="cuda"`` means them; the module is returned
    with its transfer counters reset. See tests/fake_cupy.py for what this proves."""
    pytest.importorskip("deepstyle._cuda_emulated",
                        reason="deepstyle._cuda_emulated was not built (DEEPSTYLE_CUDA_EMULATION=OFF)")
    import fake_cupy
    from deepstyle import backend

    monkeypatch.setattr(backend, "_stand_in", (fake_cupy.ndarray, fake_cupy))
    monkeypatch.setattr(fake_cupy, "transfers", {"to_device": 0, "to_host": 0})
    return fake_cupy
