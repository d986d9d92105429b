"""CLI start-up: wall time of `srbench --help` and `srbench methods` beside a bare `python -c "import click, rich"`,
run in turn (interleaved, so that the load of a shared machine falls on all alike), median of ``--repeat`` runs
each. A measurement, not a test (tests/test_startup.py guards which modules these commands import).

    python benchmarks/startup.py [--repeat 7] [--out startup.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRBENCH = str(Path(sys.executable).parent / "srbench")
COMMANDS = {
    "python -c 'import click, rich'": [sys.executable, "-c", "import click, rich"],
    "srbench --help": [SRBENCH, "--help"],
    "srbench methods": [SRBENCH, "methods"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "startup.json")
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, command in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(t) for name, t in times.items()}
    bare = median["python -c 'import click, rich'"]
    result = {"repeat": args.repeat, "median_seconds": median, "ratio_to_bare": {n: m / bare for n, m in median.items()},
              "all_seconds": times}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, m in median.items():
        print(f"{name:32s} {m:6.3f} s  ({m / bare:4.1f}x bare)")


if __name__ == "__main__":
    main()
