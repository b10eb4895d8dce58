"""Run a command under Open MPI's ``mpirun`` from a test, with a timeout (no test may hang).

Skips when ``mpirun`` or mpi4py is missing (a plain ``pip install '.[test]'``); CI installs
both (``.ci/run``). The options let root run it (CI runs as root) and let 3 ranks share 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import deepstyle

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(deepstyle.__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def mpi_missing():
    """Why MPI tests cannot run here, or None."""
    if shutil.which("mpirun") is None:
        return "mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"
    try:
        import mpi4py  # noqa: F401  (MPI itself is only loaded in the ranks)
    except ImportError:
        return "mpi4py not installed (pip install 'deepstyle[mpi]')"
    return None


needs_mpi = pytest.mark.skipif(mpi_missing() is not None, reason=str(mpi_missing()))


def mpirun(ranks, *args, timeout=180, env=None):
    """``mpirun -n ranks python args...`` -> CompletedProcess (text). One thread per rank."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    full_env.update({
        "PYTHONPATH": os.pathsep.join([PACKAGE_ROOT, TESTS] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        "DEEPSTYLE_NUM_THREADS": "1",
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
        "OMPI_MCA_hwloc_base_binding_policy": "none",
        # containers often forbid the cross-memory attach Open MPI's shared memory prefers
        "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
        **(env or {}),
    })
    command = ["mpirun", "-n", str(ranks), "-x", "PYTHONPATH", "-x", "DEEPSTYLE_NUM_THREADS",
               sys.executable, *map(str, args)]
    try:
        return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpirun -n {ranks} {' '.join(map(str, args))} hung for {timeout} s:\n"
                    f"{exc.stdout}\n{exc.stderr}")
