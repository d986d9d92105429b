"""``python -m srbench``: the same as the ``srbench`` command."""

from .cli import main

main()
