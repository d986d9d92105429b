"""srbench: a plugin-based benchmark suite for MRI super-resolution."""

__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402
from .method import Method  # noqa: E402

__all__ = ["hookimpl", "Method", "__version__"]
