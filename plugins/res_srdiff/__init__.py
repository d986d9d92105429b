"""Res-SRDiff: MRI super-resolution with residual-shifting diffusion (Safari et al. 2025), as a plugin.

The network (``network.UNetModelSwin``) and the diffusion (``diffusion.ResShiftDiffusion``) reproduce the
official code (mosaf/Res-SRDiff) to float32 precision; ``srbench conformance res-srdiff [DIR]`` proves it on a
vector set (by default the one carried in ``conformance_vectors/``). This module adapts them to srbench's Method interface: presets, training through the shared
engine, 4-step sampling, safetensors weights that keep the official state_dict names.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from srbench import budget
from srbench.engine import PatchSampler, Trainer
from srbench.errors import SRBenchError
from srbench.slice_noise import slice_generators
from srbench.torch_method import TorchMethod, to_net
from srbench.weights import load_into, load_weights, require_checkpoint

from .diffusion import ResShiftDiffusion
from .graphs import prepare
from .network import UNetModelSwin, to_bf16
from .sampler import draw_noises, resolve_precision, sample

# Official main.py defaults: model_channels 64 at 384^2 (brain); the prostate model uses 160 channels at 256^2
# (348.6 M parameters). The tiny preset is the conformance architecture, small enough for 2 CPU cores.
PAPER_NET = dict(in_channels=1, out_channels=1, num_res_blocks=[2, 2, 2, 2], attention_resolutions=(64, 32, 16, 8),
                 channel_mult=(1, 2, 4, 8))
DIFFUSION = dict(steps=4, kappa=2.0, min_noise_level=0.2, etas_end=0.99, power=0.3)
PAPER_TRAIN = dict(lr=5e-5, warmup_steps=5000, batch_size=16, ema_decay=0.999, weight_decay=1e-5, optimizer="radam",
                   **budget.PAPER_SELECTION)

PRESETS = {
    "tiny": {
        "network": dict(image_size=64, in_channels=1, out_channels=1, model_channels=32, num_res_blocks=[1, 1, 1, 1],
                        attention_resolutions=(32, 16, 8), channel_mult=(1, 2, 2, 4), lq_size=64),
        "diffusion": dict(DIFFUSION), "sample_steps": 4,
        # x0 = y + g(x_t, t, y): a residual output head (schedule, loss and sampler unchanged); it learns in
        # minutes on a CPU what the plain head needs hours for. Official checkpoints use the plain head.
        "head": "residual", "input_interpolator": "bspline", "loss_weights": {"mse": 4.0, "lpips": 1.0},
        # The shared CPU budget (srbench.budget.TINY): the same samples, patch and validation-based selection as
        # every other learned method's tiny preset.
        "train": dict(**budget.TINY.train(), lr=2e-4, warmup_steps=50, ema_decay=0.999, optimizer="radam",
                      checkpoint_every=50),
        "patch": budget.TINY.patch, "budget": budget.TINY.name,
        # bf16 where the hardware has it (else fp32, see sampler.resolve_precision): within the bound of fp32 that
        # tests/test_res_srdiff_inference.py checks on the demo
        "inference": dict(precision="bf16", compile=False),
    },
    "paper-prostate": {
        "network": dict(image_size=256, model_channels=160, lq_size=256, **PAPER_NET),
        "diffusion": dict(DIFFUSION), "sample_steps": 4, "head": "plain", "input_interpolator": "nearest",
        "loss_weights": {"mse": 10.0, "lpips": 1.0}, "train": dict(steps=budget.PAPER_STEPS, **PAPER_TRAIN), "patch": 256,
        "inference": dict(precision="fp32", compile=False),  # no paper checkpoint to bound bf16 on: exact by default
    },
    "paper-brain": {
        "network": dict(image_size=384, model_channels=64, lq_size=384, **PAPER_NET),
        "diffusion": dict(DIFFUSION), "sample_steps": 4, "head": "plain", "input_interpolator": "nearest",
        "loss_weights": {"mse": 10.0, "lpips": 1.0}, "train": dict(steps=182_000, **PAPER_TRAIN), "patch": 384,
        "inference": dict(precision="fp32", compile=False),
    },
}
PRESETS["paper"] = PRESETS["paper-prostate"]
# The paper trains with T = 15 and samples with 4; the official code uses 4 for both. Offered as a preset.
PRESETS["tiny-t15"] = {**PRESETS["tiny"], "diffusion": dict(DIFFUSION, steps=15)}


class ResSRDiff(TorchMethod):
    name = "res-srdiff"
    version = "1.3.0"  # 1.3.0: noise per slice (batch-size invariant), tiny samples in bf16; 1.2.0: shared budget
    summary = "Residual-shifting diffusion with a Swin-UNet, 4 sampling steps (Safari et al. 2025)."
    citation = ("Safari M, et al. MRI super-resolution reconstruction using efficient diffusion probabilistic "
                "model with residual shifting. 2025. Code: github.com/mosaf/Res-SRDiff")
    license = "MIT (this implementation); see the official repository for its own license"
    stochastic = True
    presets = PRESETS
    batch_size = 1  # on CPU: fastest per 256^2 slice, 2x batch 4 in bf16 (benchmarks/RESULTS.md); CUDA: 16 (__init__)
    # The initial weights are not drawn from the run's seed (the global RNG state as the process has it): kept so
    # that retraining the shipped checkpoints reproduces their training records.
    seeded_init = False
    # On CPU, long runs go through traced graphs (graphs.TracedNet, bit-identical to eager); False: always eager,
    # as benchmarks/sampler_speed.py's "-eager" modes time it.
    traced = True

    def __init__(self, preset: str = "tiny", device: str = "cpu", seed: int = 0, shift_mask: str = "official",
                 precision: str | None = None, compile: bool | None = None):
        self.shift_mask = shift_mask
        super().__init__(preset=preset, device=device, seed=seed)
        self.head = self.settings["head"]
        inference = self.settings["inference"]
        if compile is not None:
            inference["compile"] = compile
        self.set_precision(precision or inference["precision"])
        self.batch_size = 16 if self.device.type == "cuda" else self.batch_size
        self.diffusion = ResShiftDiffusion(**self.settings["diffusion"]).respaced(self.settings["sample_steps"]) \
            if self.settings["diffusion"]["steps"] != self.settings["sample_steps"] \
            else ResShiftDiffusion(**self.settings["diffusion"])
        self.train_diffusion = ResShiftDiffusion(**self.settings["diffusion"])
        self.lpips_note = None

    def build_network(self) -> UNetModelSwin:
        return UNetModelSwin(**self.settings["network"], shift_mask=self.shift_mask)

    # --- description -------------------------------------------------------------------------------
    def sampling_steps(self) -> int:
        return self.diffusion.num_timesteps

    def card(self) -> dict:
        card = super().card()
        card.update(training_steps_T=self.settings["diffusion"]["steps"], shift_mask=self.shift_mask,
                    head=self.head,
                    head_formula="x0 = y + g(x_t, t, y)" if self.head == "residual" else "x0 = g(x_t, t, y)",
                    predict_type="xstart", clip_denoised=True)
        return card

    def configured_loss(self) -> str:
        return "{mse:g} x MSE(x0_pred, x0) + {lpips:g} x LPIPS(x0_pred, x0)".format(**self.settings["loss_weights"])

    def _loss_used(self, lpips_on: bool) -> str:
        w = self.settings["loss_weights"]
        if lpips_on:
            return self.configured_loss()
        return f"{w['mse']:g} x MSE(x0_pred, x0); LPIPS term dropped: AlexNet weights unavailable"

    def set_precision(self, precision: str) -> None:
        """Sample in ``precision`` (``fp32``: exact; ``bf16``: see ``sampler.py``). The settings (and so the run's
        identity) hold the precision that will actually run on this device: bf16 falls back to fp32 on hardware
        without native bfloat16."""
        try:
            self.settings["inference"]["precision"] = resolve_precision(precision, self.device)
        except ValueError as exc:
            raise SRBenchError(f"res-srdiff: {exc}") from None

    # --- the network as the diffusion sees it ------------------------------------------------------
    def model_fn(self, net: torch.nn.Module):
        if self.head == "residual":
            return lambda x, t, y: y + net(x, t, lq=y)
        return lambda x, t, y: net(x, t, lq=y)

    # --- training ----------------------------------------------------------------------------------
    def _lpips(self):
        from srbench.metrics import LPIPS

        metric = LPIPS()
        reason = metric.unavailable_reason()
        if reason:
            self.lpips_note = f"UNAVAILABLE, trained with MSE alone: {reason}"
            return None
        self.lpips_note = "AlexNet LPIPS v0.1"
        return metric.network(self.device)

    def fit(self, train, val, workdir: Path) -> dict:
        cfg = self.train_config()
        sampler = PatchSampler(train, self.settings["patch"], cfg.batch_size, seed=self.seed)
        lpips_net, weights = self._lpips(), self.settings["loss_weights"]
        if lpips_net is None:
            srbench_console_warning(f"res-srdiff: LPIPS loss {self.lpips_note}")

        def loss_fn(net, batch):
            lr, hr = (to_net(b) for b in batch)  # [0, 1] -> [-1, 1], as the official code trains
            t = torch.randint(0, self.train_diffusion.num_timesteps, (hr.shape[0],), device=hr.device)
            out = self.train_diffusion.training_losses(self.model_fn(net), hr, lr, t)
            loss = weights["mse"] * out["mse"].mean()
            if lpips_net is not None:
                pred = out["pred_xstart"].clamp(-1, 1)
                loss = loss + weights["lpips"] * lpips_net(pred.repeat(1, 3, 1, 1), hr.repeat(1, 3, 1, 1)).mean()
            return loss, {}

        trainer = Trainer(self.net, loss_fn, sampler, cfg, workdir, self.device, description="res-srdiff training",
                          validate=self.validation(val, lambda loop: loop.inference_model()))
        record = trainer.fit()
        self.net = trainer.inference_model()
        return self.training_record(record, cfg, train, self.settings["patch"], loss=self._loss_used(lpips_net is not None),
                                    lpips=self.lpips_note, inference_weights="EMA" if cfg.ema_decay else "raw")

    # --- weights (saved by TorchMethod) ----------------------------------------------------------------
    def weights_metadata(self) -> dict:
        return {"head": self.head, "network": self.settings["network"]}

    def load(self, path: Path) -> None:
        """Our safetensors, or an official ``.pth`` checkpoint (state_dict names are the official ones)."""
        path = Path(path)
        state, meta = _read_official(path) if path.suffix != ".safetensors" else load_weights(path)
        self.head = meta.get("head") or self.head
        load_into(self.net, state, path, self.name, self.preset)
        self.net.to(self.device).eval()

    # --- inference ---------------------------------------------------------------------------------
    def _multiple(self) -> int:
        levels = len(self.settings["network"]["channel_mult"]) - 1
        return 8 * 2 ** levels  # Swin windows of 8 at the coarsest level of the U-Net

    def predict_slices(self, lr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The 4-step sampler (``sampler.sample``) on a batch of slices, padded to the U-Net's multiple.

        ``settings["inference"]`` (part of the run's identity) holds the precision that runs (``fp32`` or
        ``bf16``, see ``sampler.py``) and ``compile`` (``torch.compile`` the network, off by default: its first
        call compiles for minutes). Each slice draws its noise from its own generator, split off ``generator``
        (``srbench.slice_noise``): a slice's output does not depend on the batch it was predicted in.
        """
        opts = self.settings["inference"]
        h, w = lr.shape[-2:]
        m = self._multiple()
        y = F.pad(2 * lr - 1, (0, (-w) % m, 0, (-h) % m), value=-1.0)  # background is 0 -> -1 in network units
        y = y.contiguous(memory_format=torch.channels_last)
        noises = draw_noises(slice_generators(generator, len(y)), self.diffusion.num_timesteps, y.shape, y.device)
        model_fn = self.model_fn(self._inference_net(opts["compile"], opts["precision"]))  # prepared outside:
        # its tensors must stay usable for training (validation runs this between training steps)
        with torch.inference_mode():  # no autograd bookkeeping at all: measured 3-4 % faster than no_grad
            x = sample(model_fn, self.diffusion, y, noises)
            return ((x[..., :h, :w] + 1) / 2).clamp(0, 1).contiguous()

    def _inference_net(self, compiled: bool, precision: str = "fp32"):
        """The network as inference runs it: eval mode, channels-last memory (faster convolutions), a bfloat16
        copy for ``precision="bf16"`` (``network.to_bf16``), compiled if asked, else on CPU traced once a run is
        long enough to gain from it (``graphs.TracedNet``: the same outputs, less per-operation overhead).

        Prepared once and reused until the weights change (loading or training bumps the parameters' version
        counters). Compiling uses Inductor's freezing, which folds the weights into the compiled code as
        constants (oneDNN can then pre-pack them: measured faster on CPU); hence the rebuild on new weights.
        """
        net = self.net
        if net.training:  # validation runs between training steps
            net.eval()
        key = (*self._weights_version(), compiled, precision, self.traced)
        if getattr(self, "_prepared_key", None) != key:
            # Converted here only: walking every module costs ~4 ms, as much as a 64^2 sampling step's network.
            # The conversion keeps the parameter objects and their versions, so the key stays valid.
            net.to(memory_format=torch.channels_last)
            self._prepared = prepare(to_bf16(net) if precision == "bf16" else net, compiled, traced=self.traced)
            self._prepared_key = key
        return self._prepared

    def _weights_version(self) -> tuple:
        """(network, total version of its parameters): changes when the network is replaced, loaded or trained
        (in place, as srbench does). The parameter list is kept: walking the modules costs ~1 ms a batch."""
        if getattr(self, "_params_of", None) is not self.net:
            self._params_of, self._params = self.net, list(self.net.parameters())
        return id(self.net), sum(p._version for p in self._params)


def _read_official(path: Path) -> tuple[dict, dict]:
    """An official ``.pth`` checkpoint (model or EMA state, ``module.`` prefixes dropped); plain x0 head."""
    require_checkpoint(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise SRBenchError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    state = {k.removeprefix("module."): v for k, v in obj.items() if torch.is_tensor(v)}
    return state, {"head": "plain"}


def srbench_console_warning(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[bold yellow]warning:[/] {message}", highlight=False)

