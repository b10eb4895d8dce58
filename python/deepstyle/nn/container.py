"""``Sequential``: layers applied in order, each under a name."""

from __future__ import annotations

from .layers import Layer


class Sequential(Layer):
    """Chains layers: ``Sequential(a, b, c)`` names them "0", "1", "2";
    ``Sequential([("conv1_1", a), ("relu1_1", b)])`` uses the given names.

    Parameters are reported as "<layer name>.<parameter name>" (nested Sequentials add their
    own prefix). Setting ``trainable`` or calling ``train()``/``eval()`` applies to every layer.
    """

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            named = list(layers[0])
        else:
            named = [(str(i), layer) for i, layer in enumerate(layers)]
        self._layers = []
        seen = set()
        for i, entry in enumerate(named):
            if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)):
                raise TypeError(f"layers[{i}]: expected a (name, layer) pair, got {entry!r}")
            name, layer = entry
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] ({name!r}): expected a deepstyle.nn layer, got "
                                f"{type(layer).__name__}")
            if not name or "." in name or name in seen:
                raise ValueError(f"layers[{i}]: expected a unique non-empty name without '.', "
                                 f"got {name!r}")
            seen.add(name)
            self._layers.append((name, layer))
        self._by_name = dict(self._layers)

    def forward(self, x):
        for _, layer in self._layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_y):
        for _, layer in reversed(self._layers):
            grad_y = layer.backward(grad_y)
        return grad_y

    def clear(self):
        for _, layer in self._layers:
            layer.clear()

    def named_layers(self):
        """Yield ``(name, layer)`` in order (the direct children)."""
        yield from self._layers

    def parameters(self):
        for name, layer in self._layers:
            for pname, value, grad in layer.parameters():
                yield f"{name}.{pname}", value, grad

    def train(self, mode=True):
        self.training = bool(mode)
        for _, layer in self._layers:
            layer.train(mode)
        return self

    def to(self, device):
        for _, layer in self._layers:
            layer.to(device)
        return self

    @property
    def trainable(self):
        return all(layer.trainable for _, layer in self._layers)

    @trainable.setter
    def trainable(self, value):
        for _, layer in self._layers:
            layer.trainable = bool(value)

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return (layer for _, layer in self._layers)

    def __getitem__(self, key):
        """A layer by name, or by position (an int)."""
        if isinstance(key, int):
            return self._layers[key][1]
        try:
            return self._by_name[key]
        except KeyError:
            raise KeyError(f"no layer named {key!r}; layers are {list(self._by_name)}") from None

    def __repr__(self):
        lines = [f"  ({name}): {layer!r}".replace("\n", "\n  ") for name, layer in self._layers]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
