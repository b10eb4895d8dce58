"""Data-parallel training and batch painting over MPI ranks on this machine, and a paper
estimate of the communication share per step on a cluster.

    flock /tmp/deepstyle-timing.lock env PYTHONPATH=python python bench/bench_distributed.py

It launches itself under ``mpirun -n 1`` and ``-n 2`` (one thread per rank, each rank bound to
a core):

* training: ``cifar-cnn`` (MatConvNet's CIFAR10-quick, ``deepstyle.classify``; a same-sized
  stand-in when that is not installed) on random 32x32x3 images, global batch 100, forward,
  cost, backward, the gradient Allreduce, SGD with momentum; images/s over the timed steps and
  the Allreduce's share of a step (every rank measures; rank 0 reports the slowest rank);
* paint-batch: ``deepstyle paint-batch`` on a folder of generated images, images per minute.

Then the ring-allreduce cost model ``2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency`` for 8
machines at 10 and 100 Gbit/s, for cifar-cnn and a VGG16-sized network (138 M parameters), with
the compute time per step scaled from what was measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

BATCH = 100
VGG16_PARAMETERS = 138_357_544
VGG16_TRAINING_GFLOP_PER_IMAGE = 3 * 15.47  # forward 15.47 GFLOP at 224x224; backward ~2x that
CIFAR_CNN_TRAINING_MFLOP_PER_IMAGE = 3 * 2 * (32 * 32 * 32 * 75 + 16 * 16 * 32 * 800
                                              + 8 * 8 * 64 * 800 + 64 * 1024 + 10 * 64) / 1e6
LATENCY_S = 20e-6  # per message on an ordinary Ethernet cluster with TCP (5 us with RDMA)


def cifar_cnn(rng):
    try:
        from deepstyle.classify.models import cifar_cnn as build

        return build(3, rng=rng), "cifar-cnn"
    except ImportError:  # before deepstyle.classify: the same layers, He initialisation
        from deepstyle import nn

        layers = [nn.Conv2d(3, 32, 5, padding=2, rng=rng), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
                  nn.Conv2d(32, 32, 5, padding=2, rng=rng), nn.ReLU(),
                  nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False),
                  nn.Conv2d(32, 64, 5, padding=2, rng=rng), nn.ReLU(),
                  nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False),
                  nn.Conv2d(64, 64, 4, rng=rng), nn.ReLU(), nn.Conv2d(64, 10, 1, rng=rng), nn.Flatten()]
        return nn.Sequential(*layers), "cifar-cnn stand-in (same layers, nn.Sequential)"


def train_rank(steps, warmup):
    """One rank's part of the training benchmark; rank 0 prints a JSON line."""
    from deepstyle import nn, optim
    from deepstyle.distributed import world
    from deepstyle.parallel_training import DataParallel

    current = world()
    rng = np.random.default_rng(0)
    net, name = cifar_cnn(rng)
    x = rng.standard_normal((2000, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    sgd = optim.SGD(net, 0.01, momentum=0.9, weight_decay=1e-4)
    parallel = DataParallel(current, net, BATCH)
    sampler = parallel.shard(optim.WithoutReplacement(len(x), BATCH, rng=np.random.default_rng(1)))
    # wall time waiting for the slowest rank, wall time of the Allreduce itself, and the CPU
    # time of both (MPI polls while it waits: that CPU time is not computing)
    spent = np.zeros(3)
    allreduce = parallel._allreduce

    def timed_allreduce():
        began, cpu = time.perf_counter(), time.process_time()
        current.barrier()
        ready = time.perf_counter()
        allreduce()
        spent[:] += ready - began, time.perf_counter() - ready, time.process_time() - cpu

    parallel._allreduce = timed_allreduce
    steps_runner = optim.GradientSteps(net, nn.SoftmaxCrossEntropy(), sgd, x, y,
                                       after_backward=parallel.after_backward)
    net.train()
    steps_runner(sampler.indices(warmup), 0.01, 0)
    current.barrier()
    spent[:] = 0.0
    began, cpu = time.perf_counter(), time.process_time()
    steps_runner(sampler.indices(steps), 0.01, warmup)
    current.barrier()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    worst = max(current.allgather((seconds, spent[0], spent[1], cpu - spent[2])))
    alone = []  # the Allreduce alone, ranks in step: its best time is the idle machine's
    for _ in range(50):
        current.barrier()
        began = time.perf_counter()
        allreduce()
        alone.append(time.perf_counter() - began)
    alone = max(current.allgather(min(alone)))
    if current.is_root:
        print(json.dumps({"network": name, "ranks": current.size, "steps": steps,
                          "images_per_s": BATCH * steps / worst[0], "step_ms": 1e3 * worst[0] / steps,
                          "wait_ms": 1e3 * worst[1] / steps, "allreduce_ms": 1e3 * worst[2] / steps,
                          "compute_cpu_ms": 1e3 * worst[3] / steps, "allreduce_best_ms": 1e3 * alone, "parameters": parallel.count,
                          "describe": parallel.describe()}))


def cpu_rate(result):
    """Images/s if the slowest rank's computing time (CPU time) and the best Allreduce time were
    all of a step: the throughput of an otherwise idle machine."""
    return BATCH / ((result["compute_cpu_ms"] + result["allreduce_best_ms"]) / 1e3)


def mpirun(ranks, *args):
    env = dict(os.environ, DEEPSTYLE_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
    command = ["mpirun", "-n", str(ranks), "--bind-to", "core", "-x", "PYTHONPATH", "-x",
               "DEEPSTYLE_NUM_THREADS", sys.executable, *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True)


def paint_batch(ranks, images, iterations):
    """(wall seconds, CPU seconds of all ranks) of ``deepstyle paint-batch`` over ``images``
    generated 96 px images."""
    from PIL import Image

    folder = tempfile.mkdtemp(prefix="bench-paint-batch-")
    try:
        rng = np.random.default_rng(0)
        os.makedirs(os.path.join(folder, "in"))
        for i in range(images):
            pixels = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, "in", f"{i:03d}.png"))
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(os.path.join(folder, "style.png"))
        began, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        mpirun(ranks, "-m", "deepstyle", "paint-batch", os.path.join(folder, "in"),
               os.path.join(folder, "style.png"), "-o", os.path.join(folder, "out"), "--size", "96",
               "--iterations", str(iterations), "--weights", "random", "--arch", "vgg16",
               "--content-layers", "relu3_1", "--style-layers", "relu1_1,relu2_1,relu3_1")
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter() - began, (used.ru_utime + used.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
    finally:
        shutil.rmtree(folder)


def ring_allreduce_seconds(parameters, machines, gbit_per_s, latency=LATENCY_S):
    size = 4 * parameters
    return 2 * (machines - 1) / machines * size / (gbit_per_s * 1e9 / 8) + 2 * (machines - 1) * latency


def estimate(train, machines=8):
    """Communication share per step on ``machines`` machines like this one (2 cores each)."""
    one = next(r for r in train if r["ranks"] == 1)
    seconds_per_image_core = one["compute_cpu_ms"] / 1e3 / BATCH  # one core, one thread
    gflops = CIFAR_CNN_TRAINING_MFLOP_PER_IMAGE / 1e3 / seconds_per_image_core
    rows = []
    for name, parameters, per_image in [
            ("cifar-cnn", one["parameters"], seconds_per_image_core),
            ("VGG16-sized", VGG16_PARAMETERS, VGG16_TRAINING_GFLOP_PER_IMAGE / gflops)]:
        for per_machine_batch in ((BATCH / machines, BATCH) if name == "cifar-cnn" else (32,)):
            compute = per_machine_batch * per_image / 2  # two cores per machine
            for bandwidth in (10, 100):
                comm = ring_allreduce_seconds(parameters, machines, bandwidth)
                rows.append((name, parameters, per_machine_batch, bandwidth, compute, comm,
                             comm / (compute + comm)))
    return gflops, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--images", type=int, default=8, help="paint-batch images")
    parser.add_argument("--iterations", type=int, default=20, help="paint-batch iterations per image")
    parser.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)  # under mpirun
    args = parser.parse_args()
    if args.rank:
        return train_rank(args.steps, args.warmup)
    train = []
    for ranks in (1, 2):
        out = mpirun(ranks, __file__, "--rank", "--steps", args.steps, "--warmup", args.warmup)
        train.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"training {train[0]['network']}, global batch {BATCH}, {args.steps} steps, one thread per rank")
    print(f"  {train[1]['describe']}")
    for r in train:
        print(f"  N={r['ranks']}: {r['images_per_s']:7.0f} images/s, {r['step_ms']:6.1f} ms/step, "
              f"allreduce {r['allreduce_ms']:.3f} ms/step ({100 * r['allreduce_ms'] / r['step_ms']:.1f}%; "
              f"best alone {r['allreduce_best_ms']:.3f} ms), "
              f"waiting for the slower rank {r['wait_ms']:.1f} ms/step; computing {r['compute_cpu_ms']:.1f} "
              f"CPU-ms/step -> {cpu_rate(r):.0f} images/s on an idle machine")
    print(f"  scaling efficiency N=2: {train[1]['images_per_s'] / (2 * train[0]['images_per_s']):.2f} wall, "
          f"{cpu_rate(train[1]) / (2 * cpu_rate(train[0])):.2f} from CPU times")
    painted = {ranks: paint_batch(ranks, args.images, args.iterations) for ranks in (1, 2)}
    print(f"paint-batch: {args.images} images of 96x72 px, {args.iterations} L-BFGS iterations, "
          f"random VGG16 to relu3_1 (wall time including start-up)")
    for ranks, (seconds, cpu) in painted.items():
        print(f"  N={ranks}: {60 * args.images / seconds:6.1f} images/min ({seconds:.1f} s wall); "
              f"{cpu / args.images:.2f} CPU-s per image -> {60 * args.images * ranks / cpu:.1f} "
              f"images/min on an idle machine")
    print(f"  scaling efficiency N=2: {painted[1][0] / (2 * painted[2][0]):.2f} wall, "
          f"{painted[1][1] / painted[2][1]:.2f} from CPU times")
    gflops, rows = estimate(train)
    print(f"paper estimate, 8 machines of 2 cores like this one (ring allreduce, {LATENCY_S * 1e6:.0f} us "
          f"per message; compute from the N=1 step here, {gflops:.0f} GFLOP/s per core; VGG at 224 px)")
    print(f"  {'network':12} {'params':>11} {'batch/machine':>13} {'Gbit/s':>6} {'compute ms':>10} "
          f"{'comm ms':>8} {'comm share':>10}")
    for name, parameters, batch, bandwidth, compute, comm, share in rows:
        print(f"  {name:12} {parameters:11,} {batch:13g} {bandwidth:6} {1e3 * compute:10.1f} "
              f"{1e3 * comm:8.2f} {100 * share:9.1f}%")


if __name__ == "__main__":
    sys.exit(main())
