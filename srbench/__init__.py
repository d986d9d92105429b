"""srbench: a plugin-based benchmark suite for MRI super-resolution."""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402
from .registration import lazy  # noqa: E402

__all__ = ["hookimpl", "lazy", "Method", "__version__"]


def __getattr__(name: str):
    # Method pulls in torch; loaded on first use so that `import srbench` (and the pytest plugin) stays fast.
    if name == "Method":
        from .method import Method

        return Method
    raise AttributeError(f"module 'srbench' has no attribute {name!r}")
