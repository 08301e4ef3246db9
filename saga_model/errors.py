"""The one exception type that user-facing commands turn into a one-line error."""


class SagaError(Exception):
    """A problem caused by the user's input or files (not a bug): shown as one line, exit 2."""
