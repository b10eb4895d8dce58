"""A bounded-time fuzz of every ``ops`` function (tests/fuzz_ops.py): random shapes, strides,
paddings, dtypes, views and ill-typed arguments, in a subprocess under a 4 GB address-space
limit. Every call must end in a result (checked against the float64 reference when small and
valid) or a ValueError/TypeError naming an argument: no signal, no hang, no other exception.
DEEPSTYLE_FUZZ_SECONDS lengthens the run (CI uses the default)."""

import json
import os

import pytest

import deepstyle

SECONDS = float(os.environ.get("DEEPSTYLE_FUZZ_SECONDS", "8"))


@pytest.mark.parametrize("seed", [0, 1])
def test_random_ops_calls_end_in_a_result_or_a_clear_error(run_python_limited, seed):
    tests = os.path.dirname(os.path.abspath(__file__))
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(deepstyle.__file__)))
    path = os.pathsep.join([tests, package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    result = run_python_limited(os.path.join(tests, "fuzz_ops.py"), "--seconds", str(SECONDS / 2),
                                "--seed", str(seed), env={"PYTHONPATH": path})
    last_call = result.stderr.strip().splitlines()[-1:] if result.stderr else []
    assert result.returncode == 0, f"exit {result.returncode} during {last_call}"
    summary = json.loads(result.stdout)
    assert summary["failure_count"] == 0, "\n".join(summary["failures"])
    assert summary["counts"]["checked"] > 100 and summary["counts"]["ValueError"] > 100
