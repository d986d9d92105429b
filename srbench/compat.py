"""What differs between the Python versions srbench supports (``requires-python`` in pyproject.toml)."""

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # Python 3.10: tomli is the same parser (it became tomllib), a dependency there
    import tomli as tomllib

__all__ = ["tomllib"]
