"""A bounded-time fuzz of every ``ops`` function (tests/fuzz_ops.py): random shapes, strides,
paddings, dtypes, views and ill-typed arguments, in a subprocess under a 4 GB address-space
limit. Every call must end in a result (checked against the float64 reference when small and
valid) or a ValueError/TypeError naming an argument: no signal, no hang, no other exception.
The calls are a fixed sequence per seed (reproducible: tests/fuzz_ops.py --seed N --max-calls M
replays it); DEEPSTYLE_FUZZ_CALLS lengthens the run. The time limit is only a safety net."""

import json
import os

import pytest

import deepstyle

CALLS = int(os.environ.get("DEEPSTYLE_FUZZ_CALLS", "1500"))  # about 3 s a seed on one core


@pytest.mark.parametrize("seed", [0, 1])
def test_random_ops_calls_end_in_a_result_or_a_clear_error(run_python_limited, seed):
    tests = os.path.dirname(os.path.abspath(__file__))
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(deepstyle.__file__)))
    path = os.pathsep.join([tests, package_root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    result = run_python_limited(os.path.join(tests, "fuzz_ops.py"), "--seconds", "50", "--max-calls", str(CALLS),
                                "--seed", str(seed), env={"PYTHONPATH": path})
    last_call = result.stderr.strip().splitlines()[-1:] if result.stderr else []
    assert result.returncode == 0, f"exit {result.returncode} during {last_call}"
    summary = json.loads(result.stdout)
    assert summary["failure_count"] == 0, "\n".join(summary["failures"])
    assert summary["calls"] == CALLS, "the safety time limit cut the run short"
    assert summary["counts"]["checked"] > CALLS // 10 and summary["counts"]["ValueError"] > CALLS // 10
