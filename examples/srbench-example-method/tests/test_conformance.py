"""The plugin passes srbench's conformance kit (srbench.testing, a pytest plugin installed with srbench)."""

import torch

from srbench.testing import check_method
from srbench_example_method import ExampleSRCNN


def test_example_srcnn_conforms(tmp_path):
    # a short training keeps the test fast; the checks are the same whatever the number of steps
    report = check_method(ExampleSRCNN, preset="tiny", settings={"train": {"steps": 30}}, workdir=tmp_path)
    assert report["checks"]["fit"] == "passed"


def test_untrained_network_is_the_identity(srbench_train_pairs):
    # srbench_train_pairs: a fixture of the kit (tiny synthetic LR/HR training slices)
    lr = torch.from_numpy(srbench_train_pairs.lr[:2, None])
    with torch.no_grad():
        out = ExampleSRCNN(preset="tiny").predict_slices(lr, torch.Generator())
    assert torch.equal(out, lr)
