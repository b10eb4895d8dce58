"""A chain of named, frozen layers whose activations can be tapped, with one backward sweep.

``forward(x, taps)`` runs the chain only as far as the deepest requested tap and returns those
activations; ``backward(grads)`` walks back from the deepest tap that has a gradient, adding
each tap's gradient to the running gradient as the sweep passes that layer. Weights are frozen,
so each layer computes only the gradient with respect to its input. The activations are the
layers' own caches (each layer keeps a reference to its input, no copies): the returned arrays
must not be modified in place.

Where nothing else can see an array, the ReLUs work in place: a convolution's output that is
not tapped is rectified where it lies (nothing keeps the pre-activation: the ReLU's backward uses
its output), and a gradient the sweep made itself is masked where it lies. Every activation and
gradient of a 512 px image is a fresh allocation of up to 64 MiB otherwise, which the kernel
must fault in and zero; this halves those allocations and the memory traffic of the ReLUs.
"""

from __future__ import annotations

from .. import nn, ops
from ..backend import kernels


class ReLU(nn.ReLU):
    """A ReLU whose backward uses its output (y > 0 exactly where x > 0) rather than its input.

    In a conv-ReLU chain the output is what the next layer keeps anyway, so the pre-activation
    is freed as soon as the ReLU has run (unless it is tapped): that halves the activations a
    forward pass keeps for backward. ``overwrite=True`` computes in place, into ``x`` (forward)
    or ``grad_y`` (backward): for arrays only the caller holds, C-contiguous float32 (an
    elementwise kernel reads each element before writing it, so aliasing is safe).
    """

    def forward(self, x, overwrite=False):
        if overwrite:
            backend, _ = kernels(x)
            backend.relu_forward(x, x, x.size)
            y = x
        else:
            y = ops.relu(x)
        self._saved = y
        return y

    def backward(self, grad_y, overwrite=False):
        y, self._saved = self._saved, None
        if not overwrite:
            return ops.relu_backward(grad_y, y)
        backend, _ = kernels(grad_y, y)
        backend.relu_backward(grad_y, y, grad_y, y.size)
        return grad_y


def check_taps(taps, layer_names, what="taps"):
    """``taps`` as a non-empty list of known layer names (a single name is accepted too)."""
    if isinstance(taps, str):
        taps = [taps]
    taps = list(taps)
    if not taps:
        raise ValueError(f"{what}: expected at least one layer name, got none")
    unknown = [name for name in taps if name not in layer_names]
    if unknown:
        raise ValueError(
            f"{what}: {', '.join(map(repr, unknown))} not in the network; it has {', '.join(layer_names)}"
        )
    return taps


def check_input(x, min_size, what):
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"x: expected a (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
    if min(x.shape[2:]) < min_size:
        raise ValueError(
            f"x: expected height and width of at least {min_size} pixels for {what}, got "
            f"{x.shape[2]}x{x.shape[3]}"
        )


def add_tap_gradient(grad, tap_grad, name, shape):
    """``grad + tap_grad``; ``grad`` (None or an array the sweep owns) is updated in place."""
    if tuple(tap_grad.shape) != tuple(shape):
        raise ValueError(f"grads[{name!r}]: expected shape {tuple(shape)} (the activation's), got {tuple(tap_grad.shape)}")
    if grad is None:
        return tap_grad  # the caller's array: never written to
    grad += tap_grad
    return grad


class ConventionIO:
    """Image <-> network input through the ``convention`` the network's weights expect."""

    def preprocess(self, image):
        return self.convention.preprocess(image)

    def deprocess(self, x):
        return self.convention.deprocess(x)

    def to(self, device):
        """Move the weights to ``device`` ("cpu" or "cuda") in place; returns the network."""
        self.clear()
        for layer in self.layers():
            layer.to(device)
        return self


class FeatureNet(ConventionIO):
    """Named layers in a chain, an input convention and a description; see the module doc."""

    def __init__(self, layers, convention, description, downsampling, default_layers=None):
        self._layers = list(layers)
        self.layer_names = [name for name, _ in self._layers]
        self._position = {name: i for i, name in enumerate(self.layer_names)}
        self._downsampling = dict(downsampling)  # layer name -> total stride of its output
        self.convention = convention
        self.description = description
        # {"content": (...), "style": (...)} for networks whose layers are not VGG's (the
        # callers' VGG recipes cannot name them); None for VGG networks
        self.default_layers = default_layers
        self._ran = 0  # layers whose forward caches are waiting for a backward
        # ReLUs that may rectify their input in place: a convolution's output, which the
        # convolution does not keep (forward still checks that it is not tapped)
        self._in_place = {
            i for i in range(1, len(self._layers))
            if isinstance(self._layers[i][1], ReLU) and isinstance(self._layers[i - 1][1], nn.Conv2d)
        }
        self._tap_shapes = {}
        for _, layer in self._layers:
            layer.trainable = False

    def __repr__(self):
        return f"<FeatureNet {self.description}: {' '.join(self.layer_names)}>"

    def layers(self):
        """The layers, in order."""
        return [layer for _, layer in self._layers]

    @property
    def min_size(self):
        """Smallest input side the whole (truncated) network accepts."""
        return max(self._downsampling.values())

    def forward(self, x, taps):
        taps = check_taps(taps, self.layer_names)
        deepest = max(self._position[name] for name in taps)
        check_input(x, self._downsampling[self.layer_names[deepest]], f"layers up to {self.layer_names[deepest]}")
        self.clear()
        wanted = set(taps)
        features = {}
        for i, (name, layer) in enumerate(self._layers[: deepest + 1]):
            if i in self._in_place and self.layer_names[i - 1] not in wanted:
                x = layer.forward(x, overwrite=True)
            else:
                x = layer.forward(x)
            if name in wanted:
                features[name] = x
        self._ran = deepest + 1
        self._tap_shapes = {name: f.shape for name, f in features.items()}
        return features

    def backward(self, grads):
        if not self._ran:
            raise RuntimeError("backward: no forward pass to go back through (call forward first)")
        names = check_taps(list(grads), self.layer_names, "grads")
        missing = [name for name in names if name not in self._tap_shapes]
        if missing:
            raise ValueError(f"grads: {', '.join(missing)} were not tapped by the last forward pass "
                             f"({', '.join(self._tap_shapes)})")
        if not names:
            raise ValueError("grads: expected a gradient for at least one tapped layer, got none")
        deepest = max(self._position[name] for name in names)
        for _, layer in self._layers[deepest + 1 : self._ran]:
            layer.clear()
        grad, owned = None, False  # owned: made by this sweep, so it may be overwritten
        for name, layer in reversed(self._layers[: deepest + 1]):
            if name in grads:
                grad = add_tap_gradient(grad, grads[name], name, self._tap_shapes[name])
                owned = owned and grad is not grads[name]
            if owned and isinstance(layer, ReLU):
                grad = layer.backward(grad, overwrite=True)
            else:
                grad = layer.backward(grad)
                owned = True
        self._ran = 0
        return grad

    def clear(self):
        """Drop the activations kept for backward (after a forward that needs none)."""
        for _, layer in self._layers[: self._ran]:
            layer.clear()
        self._ran = 0

