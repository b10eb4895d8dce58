"""The one error type of the data readers."""


class DataError(ValueError):
    """A data file is missing, corrupt or not what it should be; the message names the file."""
