"""Turn the JSON that benchmarks/gpu.sh leaves in a folder into a Markdown section of benchmarks/RESULTS.md.

    python benchmarks/gpu_report.py benchmarks/results/gpu benchmarks/RESULTS.md

The section sits between ``<!-- gpu:begin -->`` and ``<!-- gpu:end -->`` (appended when absent) and is replaced
on every run, so RESULTS.md holds the latest GPU figures next to the CPU ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BEGIN, END = "<!-- gpu:begin -->", "<!-- gpu:end -->"


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def official_times(result: dict | None) -> dict:
    """(size, batch) -> the official code's seconds per slice in ``result`` (empty without it)."""
    return {(r["size"], r["batch"]): r["seconds_per_slice"]["official"] for r in (result or {}).get("rows", [])
            if "official" in r["seconds_per_slice"]}


def sampler_table(result: dict, official: dict | None = None) -> list[str]:
    """Markdown rows of one sampler_speed.py result; ``official`` (see :func:`official_times`) gives ratios to
    rows measured without the official code (the compiled steps)."""
    lines = [f"{result['preset']} on {result['device']} (torch {result['torch']}, best of {result['repeats']}, "
             f"weights: {Path(result['weights']).name}):", "",
             "| size | batch | row | ms/slice | vs official |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        for name, seconds in row["seconds_per_slice"].items():
            ratio = row.get("speedup_vs_official", {}).get(name)
            base = (official or {}).get((row["size"], row["batch"]))
            if ratio is None and base and name != "official":
                ratio = base / seconds
            lines.append(f"| {row['size']}^2 | {row['batch']} | {name} | {seconds * 1e3:.1f} | "
                         f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    return lines + [""]


def section(folder: Path) -> str:
    lines = [BEGIN, "## GPU readiness (`benchmarks/gpu.sh`)", ""]
    device = (folder / "device.txt")
    if device.exists():
        lines += ["```", device.read_text(encoding="utf-8").strip(), "```", ""]
    steps = folder / "steps.tsv"
    if steps.exists():
        lines += ["| step | exit code | seconds |", "|---|---|---|"]
        for line in steps.read_text(encoding="utf-8").splitlines():
            name, rc, seconds = line.split("\t")
            lines.append(f"| {name} | {rc}{' (time limit)' if rc in ('124', '137') else ''} | {seconds} |")
        lines.append("")
    for part in ("prostate", "brain"):
        plain = _json(folder / f"sampler_{part}.json")
        for name in (f"sampler_{part}.json", f"sampler_{part}_compiled.json"):
            result = _json(folder / name)
            lines += sampler_table(result, official_times(plain)) if result else [f"{name}: no figures (see gpu.log)",
                                                                                    ""]
    smoke = _json(folder / "train_smoke.json")
    if smoke:
        lines += [f"Training smoke test: {smoke['preset']}, {smoke['steps']} steps of batch {smoke['batch_size']} at "
                  f"{smoke['patch']}^2 on {smoke['device']}: {smoke['steps_per_s']:.2f} steps/s, loss "
                  f"{smoke['first_loss']} -> {smoke['last_loss']} (finite: {smoke['finite']}), peak memory "
                  f"{smoke['peak_memory_gib']} GiB.", ""]
    else:
        lines += ["Training smoke test: no figures (see gpu.log)", ""]
    return "\n".join(lines + [END])


def main(folder: str, results_md: str) -> None:
    path = Path(results_md)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark figures\n"
    new = section(Path(folder))
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + new + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
