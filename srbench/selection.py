"""Checkpoint selection on the validation split, as a part of every training loop (``srbench.engine``).

Every ``val_every`` steps and at the last step the loop's inference weights (EMA when kept) are scored on the
validation split by the method's ``validate`` callable (``srbench.validation``); the best-scoring weights are
written to ``best.pt`` and are what ``fit`` ends with, while ``checkpoint.pt`` keeps the final training state
for resuming. ``patience`` evaluations without improvement stop training early. The curve, the chosen step and
the rule go into the training record, which never holds a test score.
"""

from __future__ import annotations

import os

import torch

from . import distributed

BEST = "best.pt"  # the inference weights of the best validation score so far


class ValidationSelection:
    """Mixed into the engine's loops; they provide ``cfg``, ``step``, ``workdir``, ``validate`` and the
    ``_inference_state`` / ``_load_inference_state`` pair."""

    def _inference_state(self) -> dict:
        raise NotImplementedError

    def _load_inference_state(self, state: dict) -> None:
        raise NotImplementedError

    def _validation_due(self) -> bool:
        every = self.cfg.val_every
        return bool(self.validate and every and (self.step % every == 0 or self.step == self.cfg.steps))

    def _evaluate(self) -> bool:
        """Score the inference weights on the validation split, keep them if best; True: stop early (patience)."""
        value = float(self.validate(self))
        if distributed.parallel():
            value = distributed.broadcast_object(value)  # rank 0's score decides for all
        self.val_curve.append((self.step, value))
        if self.validate.better(value, self.best[1] if self.best else None):
            self.best, self.evals_since_best = (self.step, value), 0
            if distributed.is_main():
                self.workdir.mkdir(parents=True, exist_ok=True)
                tmp = (self.workdir / BEST).with_suffix(".tmp")
                torch.save({"step": self.step, "value": value, "state": self._inference_state()}, tmp)
                os.replace(tmp, self.workdir / BEST)
        else:
            self.evals_since_best += 1
        return bool(self.cfg.patience and self.evals_since_best >= self.cfg.patience)

    def _restore_best(self) -> None:
        """End on the best validation weights (the last checkpoint keeps the final state, for resuming)."""
        distributed.barrier()
        path = self.workdir / BEST
        if self.best is None or not path.exists():
            return
        saved = torch.load(path, map_location="cpu", weights_only=True)
        self._load_inference_state(saved["state"])

    def _validation_record(self, stopped_by_patience: bool) -> dict | None:
        if not (self.validate and self.cfg.val_every):
            return None
        return {"split": "val", "metric": self.cfg.val_metric, "every": self.cfg.val_every,
                "slices": self.validate.n, "higher_is_better": self.validate.higher_is_better,
                "curve": [list(v) for v in self.val_curve],
                "best_step": self.best[0] if self.best else None, "best_value": self.best[1] if self.best else None,
                "weights": "best validation score" if self.best else "last step",
                "patience": self.cfg.patience, "stopped_by_patience": stopped_by_patience}
