"""Training checkpoints: one .npz file, written atomically, holding everything a run needs to
continue exactly where it stopped -- the weights, the optimiser's state, the preprocessing
statistics, the random generators' states (data order, dropout, batch flips) and the history --
plus a JSON description (model, data set, recipe). It is read with ``allow_pickle=False``: a
checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..backend import array_module, to_host
from ..data import Preprocessing
from ..image import write_atomically

FORMAT = "deepstyle-train-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or of another kind; the message names the file."""


def save(path, *, meta, net, optimizer, preprocessing):
    """Write the checkpoint ``path`` atomically; ``meta`` must be JSON-serialisable."""
    arrays = {"meta": np.array(json.dumps(dict(meta, format=FORMAT)))}
    arrays.update({f"param/{name}": to_host(value) for name, value, _ in net.parameters()})
    if optimizer is not None:
        arrays.update({f"optim/{k}": to_host(v) for k, v in optimizer.state_dict().items()})
    arrays.update(preprocessing.state())
    write_atomically(os.fspath(path), lambda f: np.savez(f, **arrays))


def load(path):
    """``(meta, params, optimizer_state, preprocessing)`` from a checkpoint file."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a deepstyle train checkpoint (expected format "
                              f"{FORMAT!r})")
    params = {k[6:]: v for k, v in arrays.items() if k.startswith("param/")}
    optim = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
    return meta, params, optim, Preprocessing.from_state(arrays)


def set_parameters(net, params, path):
    """Copy checkpoint parameters into ``net``, checking every name and shape first."""
    mine = {name: value for name, value, _ in net.parameters()}
    if set(mine) != set(params):
        raise CheckpointError(f"{path}: parameters {sorted(params)} do not fit the network's "
                              f"{sorted(mine)}")
    for name, value in mine.items():
        if params[name].shape != value.shape:
            raise CheckpointError(f"{path}: parameter {name!r} has shape {params[name].shape}, "
                                  f"the network expects {value.shape}")
    for name, value in mine.items():
        value[...] = array_module(value).asarray(params[name])
