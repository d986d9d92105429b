"""torch.distributed: 2 CPU processes (gloo, launched by torchrun) against 1 process of the same seed.

Training: the DDP run draws the same global batches as the one-process run (each rank trains on its half), so the
weights agree up to floating-point reduction order; resuming a 2-process run restores every rank's own sampler
and RNG state exactly. Inference: ``srbench run`` under torchrun writes the same scores.csv as one process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist

from conftest import SRBENCH_EXE, subprocess_env

TORCHRUN = Path(sys.executable).parent / "torchrun"
pytestmark = pytest.mark.skipif(not dist.is_available() or not (TORCHRUN.exists() or shutil.which("torchrun")),
                                reason="torch.distributed or the torchrun launcher is not available")

SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path

    import numpy as np
    import torch
    import torch.nn.functional as F

    from srbench import distributed
    from srbench.engine import CHECKPOINT, MultiTrainer, PatchSampler, TrainConfig, Trainer
    from srbench.method import SlicePairs

    torch.set_num_threads(1)
    distributed.init()
    out, rank, world = Path(sys.argv[1]), distributed.rank(), distributed.world_size()

    def pairs():
        hr = np.random.default_rng(0).random((6, 32, 32), dtype=np.float32)
        return SlicePairs(lr=(0.5 * hr).astype(np.float32), hr=hr, case_ids=["c"] * 6)

    def model():
        torch.manual_seed(123)
        return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.Conv2d(8, 1, 3, padding=1))

    def loss(m, batch):
        lr, hr = batch
        return F.mse_loss(m(lr), hr), {}

    def noisy_loss(m, batch):  # randomness inside the loss: the global RNG, seeded seed + rank
        lr, hr = batch
        return F.mse_loss(m(lr + 0.05 * torch.randn_like(lr)), hr), {}

    def trainer(workdir, loss_fn, steps=8):
        cfg = TrainConfig(steps=steps, batch_size=4, lr=1e-2, warmup_steps=2, checkpoint_every=3, ema_decay=0.9)
        sampler = PatchSampler(pairs(), 16, 4, seed=7, min_foreground=0.0)
        return Trainer(model(), loss_fn, sampler, cfg, out / workdir, torch.device("cpu"))

    result = {"world": world}
    assert trainer("probe", loss).sampler()[0].shape[0] == 4 // world  # per-rank share of the global batch
    for name, fn in (("plain", loss), ("noisy", noisy_loss)):
        straight = trainer(name + "-straight", fn)
        record = straight.fit()
        part = trainer(name + "-resumed", fn)
        torch.manual_seed(part.cfg.seed + rank)  # as fit() seeds a fresh run
        for _ in range(5):
            part.train_step()
        part.save_checkpoint()  # collective: every rank's sampler and RNG state go to rank 0's file
        resumed = trainer(name + "-resumed", fn)
        resumed_record = resumed.fit()
        assert resumed_record["resumed_from_step"] == 5 and resumed_record["steps"] == 8
        result[name] = {"straight": straight.model.state_dict(), "ema": straight.ema.state_dict(),
                        "resumed": resumed.model.state_dict(), "history": record["loss_history"]}
    checkpoint = torch.load(out / "noisy-resumed" / CHECKPOINT, weights_only=True)
    result["checkpoint_ranks"] = len(checkpoint.get("ranks", [None]))
    result["rank_rngs_differ"] = world > 1 and not torch.equal(checkpoint["ranks"][0]["torch_rng"],
                                                               checkpoint["ranks"][1]["torch_rng"])

    torch.manual_seed(5)  # a GAN through MultiTrainer (group-wise backward, gradients averaged by all-reduce)
    G = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1))
    D = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 4, stride=2), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(4, 1, 3))

    def step_fn(m, batch, update):
        lr, hr = batch
        fake = m["G"](lr)
        loss_d = F.softplus(m["D"](fake.detach())).mean() + F.softplus(-m["D"](hr)).mean()
        update("D", loss_d)
        loss_g = F.softplus(-m["D"](fake)).mean() + 10 * (fake - hr).abs().mean()
        update("G", loss_g)
        return {"D": loss_d, "G": loss_g}

    cfg = TrainConfig(steps=4, batch_size=4, optimizer="adam", lr=1e-2, betas=(0.5, 0.999), ema_decay=0.9,
                      checkpoint_every=2)
    gan = MultiTrainer({"G": G, "D": D}, {"D": ["D"], "G": ["G"]}, step_fn,
                       PatchSampler(pairs(), 16, 4, seed=1, min_foreground=0.0), cfg, out / "gan",
                       torch.device("cpu"), ema=("G",))
    gan.fit()
    result["gan"] = {n: m.state_dict() for n, m in gan.models.items()}
    if distributed.is_main():
        torch.save(result, out / "result.pt")
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = subprocess_env(OMP_NUM_THREADS="1")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _torchrun(*args, nproc=2) -> list[str]:
    exe = str(TORCHRUN) if TORCHRUN.exists() else shutil.which("torchrun")
    return [exe, "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
            *map(str, args)]


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def training_runs(tmp_path_factory) -> tuple[dict, dict]:
    root = tmp_path_factory.mktemp("ddp")
    script = root / "train_ddp.py"
    script.write_text(SCRIPT)
    one, two = root / "one", root / "two"
    one.mkdir(), two.mkdir()
    env = _env()
    _check(subprocess.run([sys.executable, str(script), str(one)], env=env, capture_output=True, text=True,
                          timeout=120))
    _check(subprocess.run(_torchrun(script, two), env=env, capture_output=True, text=True, timeout=120))
    return (torch.load(one / "result.pt", weights_only=True), torch.load(two / "result.pt", weights_only=True))


def test_two_processes_train_to_the_one_process_weights(training_runs):
    one, two = training_runs
    assert one["world"] == 1 and two["world"] == 2
    deviation = _max_diff(one["plain"]["straight"], two["plain"]["straight"])
    print(f"1-vs-2-process max |weight difference| after 8 steps: {deviation:.3g}")
    assert deviation < 1e-5
    assert _max_diff(one["plain"]["ema"], two["plain"]["ema"]) < 1e-5
    assert _max_diff(one["gan"]["G"], two["gan"]["G"]) < 1e-5 and _max_diff(one["gan"]["D"], two["gan"]["D"]) < 1e-5
    # the logged loss is the global batch's (averaged over ranks), as one process logs it
    for (s1, l1), (s2, l2) in zip(one["plain"]["history"], two["plain"]["history"]):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-5)


def test_two_process_resume_restores_every_ranks_state(training_runs):
    one, two = training_runs
    for run in (one, two):
        for name in ("plain", "noisy"):  # noisy: rank-dependent RNG draws inside the loss
            assert _equal(run[name]["straight"], run[name]["resumed"]), (run["world"], name)
    assert two["checkpoint_ranks"] == 2 and two["rank_rngs_differ"]
    assert one["checkpoint_ranks"] == 1  # a single process writes no per-rank list


def test_srbench_run_under_torchrun_writes_the_one_process_scores(bicubic_run, tmp_path):
    _, run_dir = bicubic_run
    results = tmp_path / "results"
    proc = subprocess.run(_torchrun(SRBENCH_EXE, "run", "--method", "bicubic", "--dataset", "demo",
                                    "--results-dir", results), env=_env(), capture_output=True, text=True,
                          timeout=120)
    _check(proc)
    [scores] = list(results.rglob("scores.csv"))
    assert scores.parent.name == run_dir.name  # the same run identity
    expected, got = pd.read_csv(run_dir / "scores.csv"), pd.read_csv(scores)
    assert not got.duplicated(["case", "slice"]).any()
    pd.testing.assert_frame_equal(got, expected)
    assert len(list(results.rglob("record.json"))) == 1


def test_single_process_keeps_distributed_off(monkeypatch):
    from srbench import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.init() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.gather_objects({"a": 1}) == [{"a": 1}] and distributed.broadcast_object(3) == 3
    distributed.barrier()  # a no-op


def test_res_srdiff_sampler_matches_the_reference_loop():
    """The sync-free sampler in predict_slices computes what ResShiftDiffusion.p_sample_loop computes."""
    import torch.nn.functional as F

    from srbench.slice_noise import slice_generators
    from srbench_plugins.res_srdiff import ResSRDiff
    from srbench_plugins.res_srdiff.sampler import draw_noises

    torch.manual_seed(0)
    method = ResSRDiff(preset="tiny", precision="fp32")  # the exact mode
    lr = torch.rand(2, 1, 40, 52)
    with torch.no_grad():
        got = method.predict_slices(lr, torch.Generator().manual_seed(3))
        m = method._multiple()
        y = F.pad(2 * lr - 1, (0, (-52) % m, 0, (-40) % m), value=-1.0)
        gens = slice_generators(torch.Generator().manual_seed(3), len(y))  # each slice's noise, step-major
        noises = draw_noises(gens, method.diffusion.num_timesteps, y.shape, y.device)
        ref = ((method.diffusion.p_sample_loop(method.model_fn(method.net), y, noises=noises)[..., :40, :52] + 1) / 2)
    assert torch.equal(got, ref.clamp(0, 1))
