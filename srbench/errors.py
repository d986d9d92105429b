"""User-facing errors: the CLI prints them as one line, without a traceback."""


class SRBenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``name`` (difflib's ratio >= 0.6), or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
