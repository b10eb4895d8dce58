"""Data-parallel training (``deepstyle.parallel_training``): N ranks at global batch B reach the
weights one process reaches at batch B; a failing or dying rank stops every rank, naming it;
a checkpoint written by rank 0 resumes on another rank count. Plus the one-rank pieces."""

from __future__ import annotations

import contextlib
import csv
import os

import numpy as np
import pytest

import deepstyle
import parallel_training_job as job
from deepstyle import nn, optim
from deepstyle.distributed import RankFailed, World, launched_ranks
from deepstyle.parallel_training import DataParallel, mpi_is_cuda_aware, shard_bounds
from mpirun import mpirun, needs_mpi

STEPS = 300


@pytest.fixture(scope="module")
def one_process():
    """The reference: the job's run in this process at batch 12 (and 10, which 3 ranks split
    unevenly), on one thread like each rank (tiny kernels gain nothing from a second thread,
    and lose much when the machine is busy)."""
    with one_thread():
        return {batch: job.train(STEPS, batch) for batch in (12, 10)}


@contextlib.contextmanager
def one_thread():
    saved = deepstyle.get_num_threads()
    deepstyle.set_num_threads(1)
    try:
        yield
    finally:
        deepstyle.set_num_threads(saved)


def assert_same_weights(actual, expected):
    """Equal to float32 rounding, accumulated. Each step's gradient sum is taken in a different
    order (per-rank partial sums), so each step's update differs by ~eps32 relative; with
    momentum 0.9 an error is carried for ~10 steps, and over 300 steps such errors add up to at
    most 300 * 10 * eps32 ~ 2e-4 relative to the weights' size (in practice they wander like a
    random walk, ~sqrt(300) times less)."""
    for name, value in expected.items():
        scale = float(np.abs(value).max())
        np.testing.assert_allclose(actual[name], value, rtol=0, atol=2e-4 * scale, err_msg=name)


def test_shard_bounds_cover_the_batch_contiguously():
    for batch in range(1, 40):
        for ranks in range(1, batch + 1):
            bounds = shard_bounds(batch, ranks)
            sizes = [stop - start for start, stop in bounds]
            assert bounds[0][0] == 0 and bounds[-1][1] == batch
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    with pytest.raises(ValueError, match="batch_size: expected at least one example per rank"):
        shard_bounds(2, 3)


def test_launched_ranks_reads_the_launchers_variables():
    assert launched_ranks({}) == 1
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert launched_ranks({"PMI_SIZE": "16"}) == 16
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "junk", "PMIX_SIZE": "2"}) == 2


def test_one_rank_world_needs_no_mpi():
    single = World()
    assert (single.rank, single.size, single.is_root) == (0, 1, True)
    assert single.gather(5) == [5] and single.bcast("x") == "x"
    buffer = np.arange(3, dtype=np.float32)
    assert single.allreduce_sum(buffer) is buffer and buffer.tolist() == [0, 1, 2]
    single.agree(None, "setting up")
    with pytest.raises(RankFailed, match="setting up failed on rank 0: bad style"):
        single.agree(ValueError("bad style"), "setting up")


def test_one_rank_data_parallel_equals_plain_training_bitwise(one_process):
    """The hook at one rank is an exact copy: the same weights, bit for bit."""
    x, y = job.data()
    net = job.network()
    sgd = optim.SGD(net, 0.05, momentum=0.9, weight_decay=1e-3)
    sampler = optim.WithoutReplacement(job.SAMPLES, 12, rng=np.random.default_rng(2))
    net.train()
    with one_thread():
        optim.run_loop(optim.GradientSteps(net, nn.SoftmaxCrossEntropy(), sgd, x, y), sampler,
                       STEPS, schedule=optim.Constant(0.05))
    for name, value, _ in net.parameters():
        np.testing.assert_array_equal(one_process[12][name], value)


def test_a_failing_step_on_one_rank_raises_rank_failed(one_process):
    with pytest.raises(RankFailed, match="a training step failed on rank 0: ValueError: injected"):
        job.train(20, 12, fail=(0, 7))


def test_describe_says_where_the_buffer_lives():
    line = DataParallel(World(), job.network(), 12).describe()
    assert "one flat float32 buffer (351 values" in line and "in host memory" in line


def test_cuda_awareness_can_be_forced(monkeypatch):
    """The GPU paths need a GPU (not in CI); the choice between them is tested here."""
    monkeypatch.delenv("DEEPSTYLE_MPI_CUDA_AWARE", raising=False)
    assert mpi_is_cuda_aware() in (True, False)  # no MPI loaded in this process: False
    for value, aware in (("1", True), ("0", False)):
        monkeypatch.setenv("DEEPSTYLE_MPI_CUDA_AWARE", value)
        assert mpi_is_cuda_aware() is aware


def load(path):
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


@needs_mpi
@pytest.mark.parametrize("ranks,batch", [(2, 12), (3, 12), (3, 10)])
def test_ranks_reach_the_weights_of_one_process(one_process, tmp_path, ranks, batch):
    out = tmp_path / "weights.npz"
    result = mpirun(ranks, job.__file__, out, "--steps", STEPS, "--batch", batch)
    assert result.returncode == 0, result.stderr
    split = "+".join(str(b - a) for a, b in shard_bounds(batch, ranks))
    assert f"{ranks} MPI ranks" in result.stderr and f"global batch {batch} = {split}" in result.stderr
    assert_same_weights(load(out), one_process[batch])


@needs_mpi
def test_a_checkpoint_from_two_ranks_resumes_on_three(one_process, tmp_path):
    checkpoint, out = tmp_path / "checkpoint.npz", tmp_path / "weights.npz"
    result = mpirun(2, job.__file__, tmp_path / "first.npz", "--steps", 150, "--checkpoint-at", 150,
                    "--checkpoint", checkpoint)
    assert result.returncode == 0, result.stderr
    result = mpirun(3, job.__file__, out, "--steps", STEPS, "--resume", checkpoint)
    assert result.returncode == 0, result.stderr
    assert_same_weights(load(out), one_process[12])


@needs_mpi
def test_a_rank_that_raises_stops_every_rank_naming_it(tmp_path):
    result = mpirun(3, job.__file__, tmp_path / "w.npz", "--fail", 1, 40, timeout=120)
    assert result.returncode != 0
    err = result.stderr
    assert "rank 1 of 3: ValueError: injected failure at step 40" in err, err
    assert err.count("stopped: a training step failed on rank 1") == 3, err
    assert not (tmp_path / "w.npz").exists()


@needs_mpi
def test_a_rank_that_dies_ends_the_job(tmp_path):
    """A rank killed outright cannot report; mpirun notices and ends the others (no hang)."""
    result = mpirun(2, "-c", "import os, signal, sys, parallel_training_job as job\n"
                    "job.FailAt.__call__ = lambda self, x, step: os.kill(os.getpid(), signal.SIGKILL) "
                    "if job.world().rank == 1 and step == 30 else x\n"
                    f"sys.exit(job.main([{str(tmp_path / 'w.npz')!r}, '--fail', '1', '30']))",
                    timeout=120)
    assert result.returncode != 0
    assert "rank 1" in result.stderr and "signal 9" in result.stderr, result.stderr


@needs_mpi
def test_train_command_on_three_ranks_matches_one_process(tmp_path, capsys):
    """`mpirun -n 3 deepstyle train ... --distributed` (batch 20 = 7+7+6) ends with the weights of
    the same command in one process; rank 0 alone reports and writes."""
    from deepstyle import cli
    from deepstyle.classify import checkpoint
    from test_data import write_fashion

    write_fashion(tmp_path / "data", np.random.default_rng(0), n_train=160, n_test=20)
    command = ["train", "linear", "--data", tmp_path / "data", "--epochs", 3, "--batch-size", 20,
               "--validation", 20, "--quiet"]
    with one_thread():
        assert cli.main([str(a) for a in command + ["--out", tmp_path / "one"]]) == 0
    capsys.readouterr()
    result = mpirun(3, "-m", "deepstyle", *command, "--out", tmp_path / "three", "--distributed")
    assert result.returncode == 0, result.stderr
    assert "global batch 20 = 6+7+7" in result.stderr and result.stdout.count("test accuracy") == 1
    expected = checkpoint.load(str(tmp_path / "one" / "checkpoint.npz"))[1]
    assert_same_weights(checkpoint.load(str(tmp_path / "three" / "checkpoint.npz"))[1], expected)
    # the recorded training metrics are the whole epoch's, summed over the ranks
    one, three = (list(csv.DictReader(open(tmp_path / run / "history.csv"))) for run in ("one", "three"))
    assert len(one) == len(three) == 3
    for a, b in zip(one, three):
        assert float(b["train_cost"]) == pytest.approx(float(a["train_cost"]), rel=1e-4)
        # a prediction on a near-tie may flip: one of the 20 validation images, two of the 140
        # training images (the same image seen in training with slightly different weights)
        for column, images in (("train_top1_error", 140 / 2), ("val_top1_error", 20)):
            assert abs(float(b[column]) - float(a[column])) <= 1 / images + 1e-9, column

    result = mpirun(2, "-m", "deepstyle", *command, "--out", tmp_path / "alone")
    assert result.returncode != 0 and "add --distributed" in result.stderr
    assert not (tmp_path / "alone").exists()


@needs_mpi
def test_ranks_sharing_cores_split_them(tmp_path):
    """Without DEEPSTYLE_NUM_THREADS, 2 unbound ranks on one machine take half its cores each.
    Each rank writes its own file: mpirun may interleave the ranks' stdout mid-line."""
    script = ("import sys\n"
              "from deepstyle.distributed import world, set_threads_per_rank\n"
              "w = world()\n"
              "threads = set_threads_per_rank(w)\n"
              "open(f'{sys.argv[1]}/rank{w.rank}', 'w').write(str(threads))")
    result = mpirun(2, "-c", script, tmp_path, env={"DEEPSTYLE_NUM_THREADS": ""})
    assert result.returncode == 0, result.stderr
    expected = max(1, len(os.sched_getaffinity(0)) // 2)
    written = {path.name: path.read_text() for path in tmp_path.iterdir()}
    assert written == {"rank0": str(expected), "rank1": str(expected)}, result.stdout
