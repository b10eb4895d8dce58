import re

import deepstyle
from deepstyle import _cpu

SIMD_LEVELS = {"AVX-512", "AVX2", "AVX", "SSE2", "scalar"}


def test_info_prints_version_backends_simd_and_threads(run_python):
    result = run_python("-m", "deepstyle", "info", env={"DEEPSTYLE_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.search(rf"^deepstyle {re.escape(deepstyle.__version__)}$", text, re.M), text
    backends = re.search(r"^backends: (.+)$", text, re.M)
    assert backends and "cpu" in backends.group(1).split(", "), text
    simd = re.search(r"^SIMD: (.+)$", text, re.M)
    assert simd and simd.group(1) in SIMD_LEVELS, text
    assert re.search(r"^threads: 1$", text, re.M), text


def test_info_reports_the_default_thread_count(run_python):
    result = run_python("-m", "deepstyle", "info")
    assert result.returncode == 0, result.stderr
    assert f"threads: {_cpu.max_hardware_threads()}" in result.stdout


def test_package_metadata():
    assert re.fullmatch(r"\d+\.\d+\.\d+", deepstyle.__version__)
    assert "cpu" in deepstyle.backends()
    assert _cpu.simd_level in SIMD_LEVELS
