"""What the entry points of the first-party dataset plugins name: each dataset's import path.

Loading a plugin must stay cheap (every ``srbench`` command, ``--help`` included, loads them all), so each
dataset is registered by import path (:func:`srbench.lazy`) and its package (NumPy, SimpleITK, DICOM reading)
is imported the first time a command uses it.
"""

from __future__ import annotations

import srbench


class DatasetPlugin:
    """A plugin that registers one dataset by import path."""

    def __init__(self, target: str, name: str):
        self.dataset = srbench.lazy(target, name=name)

    @srbench.hookimpl
    def register_datasets(self, register):
        register(self.dataset)


demo = DatasetPlugin("srbench_datasets.demo:Demo", "demo")
prostatex = DatasetPlugin("srbench_datasets.prostatex:ProstateX", "prostatex")
folder = DatasetPlugin("srbench_datasets.folder:FolderDataset", "folder")
