"""benchmarks/gpu_report.py: the RESULTS.md section that benchmarks/gpu.sh writes from its JSON."""

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _report_module():
    spec = importlib.util.spec_from_file_location("gpu_report", BENCHMARKS / "gpu_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(rows):
    return {"preset": "paper-prostate", "device": "GPU X", "torch": "2.x", "repeats": 3, "weights": "random init",
            "rows": rows}


def test_compiled_rows_get_their_ratio_from_the_plain_step_and_the_section_is_replaced(tmp_path):
    report = _report_module()
    plain = _result([{"size": 256, "batch": 1, "seconds_per_slice": {"official": 0.9, "srbench-bf16 (bf16)": 0.3},
                      "speedup_vs_official": {"srbench-bf16 (bf16)": 3.0}}])
    compiled = _result([{"size": 256, "batch": 1, "seconds_per_slice": {"srbench-compiled-bf16 (bf16)": 0.2}}])
    (tmp_path / "sampler_prostate.json").write_text(json.dumps(plain))
    (tmp_path / "sampler_prostate_compiled.json").write_text(json.dumps(compiled))
    (tmp_path / "steps.tsv").write_text("CUDA tests\t0\t12\nsampler 384^2 brain\t124\t70\n")
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark figures\n\nCPU rows stay.\n")
    report.main(str(tmp_path), str(results))
    report.main(str(tmp_path), str(results))  # a second run replaces the section instead of adding one
    text = results.read_text()
    assert text.count(report.BEGIN) == 1 and "CPU rows stay." in text
    assert "| 256^2 | 1 | srbench-bf16 (bf16) | 300.0 | 3.00x |" in text
    assert "| 256^2 | 1 | srbench-compiled-bf16 (bf16) | 200.0 | 4.50x |" in text  # 0.9 s official / 0.2 s
    assert "| sampler 384^2 brain | 124 (time limit) | 70 |" in text
    assert "sampler_brain.json: no figures (see gpu.log)" in text
    assert "Training smoke test: no figures (see gpu.log)" in text
