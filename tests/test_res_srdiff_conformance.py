"""Res-SRDiff re-implementation vs. conformance vectors produced by the official code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from srbench.errors import SRBenchError
from srbench_plugins.res_srdiff.conformance import (
    BUNDLED_VECTORS, build_model, check_conformance, load_vectors, model_fn_of, read_json)
from srbench_plugins.res_srdiff.diffusion import ResShiftDiffusion, space_timesteps
from srbench_plugins.res_srdiff.network import build_network, count_parameters

# The set carried in the repository always runs; a second, larger set beside the checkout (../shared) also
# runs when present.
BUNDLED = BUNDLED_VECTORS
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "res_srdiff"
VECTOR_SETS = [pytest.param(BUNDLED, id="bundled")] + (
    [pytest.param(SHARED, id="shared")] if SHARED.is_dir() else [])


@pytest.fixture(scope="module", params=VECTOR_SETS)
def vector_dir(request) -> Path:
    return request.param


@pytest.fixture(scope="module")
def vectors(vector_dir):
    return load_vectors(vector_dir)


@pytest.fixture(scope="module")
def report(vector_dir):
    return check_conformance(vector_dir, detail=True)


@pytest.fixture(scope="module")
def model(vectors):
    return build_model(vectors["config"], vectors["weights"])


def test_the_repository_carries_its_vector_set():
    """A fresh clone checks conformance without anything beside it: the set, its provenance and generator."""
    names = {p.name for p in BUNDLED.iterdir()}
    assert {"config.json", "schedule.json", "weights.safetensors", "forward.safetensors", "q_sample.safetensors",
            "sampler.safetensors", "README.md", "generate.py"} <= names
    assert sum(p.stat().st_size for p in BUNDLED.iterdir()) < 6 * 2 ** 20
    config = read_json(BUNDLED / "config.json")
    assert config["repo"] == "mosaf/Res-SRDiff" and len(config["commit"]) == 40
    assert set(config["generation_checks"].values()) == {0.0}


def test_schedules_match_for_T4_and_T15(report):
    devs = report["detail"]["schedule"]
    for steps in ("T4", "T15"):
        names = [k for k in devs if k.startswith(f"{steps}/")]
        assert {f"{steps}/etas", f"{steps}/posterior_log_variance_clipped"} <= set(names)
        assert max(devs[k] for k in names) <= 1e-6, devs
    assert report["schedule"] <= 1e-6


def test_q_sample_matches(report):
    assert report["q_sample"] <= 1e-4


def test_network_forward_matches(report):
    devs = report["detail"]["forward"]
    assert {"out", "pred_xstart", "mean", "log_variance"} <= set(devs)
    assert report["forward"] <= 1e-4, devs


def test_full_sampler_matches(report):
    devs = report["detail"]["sampler"]
    assert {"x_T", "samples", "pred_xstart", "means", "final"} <= set(devs)
    assert report["sampler"] <= 1e-4, devs
    assert report["passed"] and "error" not in report


def test_state_dict_keys_and_shapes_equal_official(vectors):
    ours = build_network(vectors["config"]["ctor_kwargs"]).state_dict()
    ref = vectors["weights"]
    assert set(ours) == set(ref)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    masks = [k for k in ref if k.endswith("attn_mask")]
    assert masks and all(torch.equal(ours[k], ref[k]) for k in masks)  # official mask values


def test_standard_shift_mask_changes_output(vectors, model):
    std = build_model(vectors["config"], vectors["weights"], shift_mask="standard")
    v = vectors["forward"]
    with torch.no_grad():
        a = model(v["x_t"], v["t"], lq=v["lq"])
        b = std(v["x_t"], v["t"], lq=v["lq"])
    assert (a - b).abs().max().item() > 0.1


def test_parameter_count(vectors, model):
    assert count_parameters(model) == vectors["config"]["param_count"]


def test_respaced_sampling_uses_kept_etas_and_original_timesteps(vectors):
    base_kwargs = vectors["schedule"]["diffusion_kwargs_except_steps"]
    trained = ResShiftDiffusion.from_official_kwargs({**base_kwargs, "steps": 15})
    sampler = trained.respaced(4)
    kept = space_timesteps(15, 4)
    assert kept == [int(15 / 4 * k) for k in range(4)]
    assert sampler.timestep_map.tolist() == kept and sampler.num_timesteps == 4
    ref15 = np.asarray(vectors["schedule"]["T15"]["etas"])
    assert np.abs(sampler.etas - ref15[kept]).max() <= 1e-6
    assert np.array_equal(sampler.etas, trained.etas[kept])
    assert np.array_equal(sampler.etas_prev[1:], trained.etas[kept][:-1])

    seen = []

    def model_fn(x, t, lq):
        seen.append(t.tolist())
        return torch.zeros_like(x)

    y = torch.zeros(2, 1, 8, 8)
    sampler.p_sample_loop(model_fn, y, generator=torch.Generator().manual_seed(0))
    assert seen == [[k, k] for k in reversed(kept)]


def test_seeded_global_rng_reproduces_recorded_final(vectors, model):
    seeding = vectors["config"].get("seeding", {}).get("sampler_noise", "")
    match = re.search(r"manual_seed\((\d+)\)", seeding)
    if not match:
        pytest.skip("config.json does not record the sampler seed")
    diff = ResShiftDiffusion.from_official_kwargs(vectors["config"]["diffusion_kwargs"])
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(match.group(1)))
        final = diff.p_sample_loop(model_fn_of(model), vectors["sampler"]["lq"])
    finally:
        torch.random.set_rng_state(state)
    assert (final - vectors["sampler"]["final"]).abs().max().item() <= 1e-4


def test_missing_file_raises_srbench_error(tmp_path):
    for name in ("config.json", "schedule.json", "weights.safetensors", "forward.safetensors",
                 "q_sample.safetensors"):
        (tmp_path / name).symlink_to(BUNDLED / name)
    with pytest.raises(SRBenchError, match="sampler.safetensors"):
        check_conformance(tmp_path)
    (tmp_path / "sampler.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SRBenchError, match="sampler.safetensors"):
        check_conformance(tmp_path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SRBenchError, match="bad.json"):
        read_json(tmp_path / "bad.json")


def test_a_wrong_shift_mask_fails_the_bundled_set(tmp_path):
    """The small set still tells a plausible mistake from the official network (the usual Swin mask)."""
    vectors = load_vectors(BUNDLED)
    ours = build_model(vectors["config"], vectors["weights"])
    std = build_model(vectors["config"], vectors["weights"], shift_mask="standard")
    v = vectors["forward"]
    with torch.no_grad():
        good = (ours(v["x_t"], v["t"], lq=v["lq"]) - v["out"]).abs().max().item()
        bad = (std(v["x_t"], v["t"], lq=v["lq"]) - v["out"]).abs().max().item()
    assert good <= 1e-4 < bad


def test_the_command_checks_the_bundled_set_by_default():
    import click
    from click.testing import CliRunner

    from srbench_plugins.entry_points import res_srdiff

    group = click.Group("srbench")
    res_srdiff.register_commands(group)
    result = CliRunner().invoke(group, ["conformance", "res-srdiff", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True
