"""Training budgets: what compared learned methods share, stated once.

A comparison of learned methods is only fair when each saw the same amount of training data: the same number
of training samples (optimizer steps x batch size) of the same patch size, with the checkpoint chosen the same
way (on the validation split, by the same metric, at the same interval). Every learned plugin's ``tiny`` preset
takes its steps, batch, patch and validation from ``TINY``; paper presets follow the paper (the same number of
steps for every method, Safari et al. 2025: "all models were trained for the same number of steps").

    >>> TINY.steps * TINY.batch_size == TINY.samples
    True
    >>> TINY.train()["batch_size"], TINY.patch, TINY.steps
    (8, 64, 2000)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Budget:
    """One training budget: samples = steps x batch_size patches of ``patch`` x ``patch`` pixels."""

    name: str
    samples: int
    batch_size: int
    patch: int
    val_every: int | None       # steps between validation evaluations (and at the last step)
    val_metric: str = "psnr"    # selection metric, scored as the test split is (masked, data range 1)
    val_slices: int | None = None  # evenly spaced validation slices scored (None: all)
    patience: int | None = None    # early stop after this many evaluations without improvement (None: never)

    @property
    def steps(self) -> int:
        if self.samples % self.batch_size:
            raise ValueError(f"budget {self.name}: {self.samples} samples do not split into batches of {self.batch_size}")
        return self.samples // self.batch_size

    def train(self) -> dict:
        """The ``TrainConfig`` fields this budget fixes (a preset adds its optimizer, LR and schedule)."""
        return dict(steps=self.steps, batch_size=self.batch_size, val_every=self.val_every,
                    val_metric=self.val_metric, val_slices=self.val_slices, patience=self.patience)

    def describe(self) -> dict:
        return {**asdict(self), "steps": self.steps}


# CPU-sized: every learned demo checkpoint is trained on 16,000 random 64 x 64 patches (2000 steps of 8; about
# 30 minutes for Res-SRDiff on one idle CPU thread), and the weights kept are those with the best validation PSNR
# among the evaluations every 500 steps, on 4 evenly spaced validation slices (a full DDIM-50 TM-DDPM evaluation
# costs about 10 s per slice on one CPU thread).
TINY = Budget(name="tiny", samples=16_000, batch_size=8, patch=64, val_every=500, val_metric="psnr", val_slices=4)

# Paper presets: the same number of steps for every method (131k for the prostate model, as Res-SRDiff's), each
# at its paper's batch size and image size; checkpoint selection on validation as for ``tiny``.
PAPER_STEPS = 131_000
PAPER_SELECTION = dict(val_every=5000, val_metric="psnr", val_slices=None)


def record(cfg, patch: int, seconds: float, steps_done: int, device: str, budget: str | None) -> dict:
    """What a training record states about the budget actually spent (next to what was planned)."""
    return {"name": budget, "samples_seen": steps_done * cfg.batch_size, "planned_samples": cfg.steps * cfg.batch_size,
            "steps": steps_done, "planned_steps": cfg.steps, "batch_size": cfg.batch_size, "patch": patch,
            "wall_seconds": round(seconds, 1), "device": device}
