"""User-facing errors: the CLI prints them as one line, without a traceback."""


class SRBenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""
