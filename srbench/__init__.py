"""srbench: a plugin-based benchmark suite for MRI super-resolution."""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402
from .registration import lazy  # noqa: E402

# The Python API (srbench.api); like Method, loaded on first use.
API = ("evaluate", "score", "load_results", "leaderboard", "stats", "load_run", "Run")
__all__ = ["hookimpl", "lazy", "Method", "__version__", *API]


def __getattr__(name: str):
    # Method pulls in torch; loaded on first use so that `import srbench` (and the pytest plugin) stays fast.
    if name == "Method":
        from .method import Method

        return Method
    if name in ("stats", "leaderboard"):  # modules of the same name, callable as the API function
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'srbench' has no attribute {name!r}")
