"""The one error type of deepstyle.models."""


class WeightsError(ValueError):
    """A weights file that cannot be used: unknown format, corrupt, unsafe, or the wrong shapes.

    The message names the file and, where one is at fault, the layer.
    """
