"""Benchmark: `skylab import` of a large results.tsv (goal: 5,000 rows in <= 30 s).

Writes an autoresearch-style results.tsv of N rows (one row in 5 a keep, a few crashes, one row in
10 naming a commit of the repository, the rest reset away so they become placeholders) and times the
real CLI importing it into a fresh tiny-bigram experiment, then `skylab history` of that run.

    python bench/importing.py [--rows 5000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import SKYLAB  # noqa: E402
from skylab.experiment.scaffold import init_experiment  # noqa: E402


def results_tsv(rows: int, commits: list[str]) -> str:
    lines = ["commit\tval_bpb\tmemory_gb\tstatus\tdescription"]
    for n in range(rows):
        status = "keep" if n % 5 == 0 else ("crash" if n % 37 == 0 else "discard")
        commit = commits[n // 10] if n % 10 == 0 and n // 10 < len(commits) else f"{n + 0x1000000:07x}"
        value = 0.0 if status == "crash" else 1.0 - n / (rows * 10) + (n % 7) / 1000
        lines.append(f"{commit}\t{value:.6f}\t44.{n % 10}\t{status}\tidea number {n}: try something")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="skylab-import-"))
    try:
        exp = workdir / "exp"
        init_experiment(exp, template="tiny-bigram")
        commits = []
        for n in range(args.rows // 100):  # real commits for some rows
            (exp / "notes.txt").write_text(f"{n}\n")
            subprocess.run(["git", "add", "notes.txt"], cwd=exp, check=True)
            subprocess.run(["git", "commit", "-qm", f"change {n}"], cwd=exp, check=True)
            commits.append(
                subprocess.run(
                    ["git", "rev-parse", "HEAD"], cwd=exp, check=True, capture_output=True, text=True
                ).stdout.strip()
            )
        tsv = workdir / "results.tsv"
        tsv.write_text(results_tsv(args.rows, commits))
        started = time.perf_counter()
        subprocess.run(
            [SKYLAB, "import", str(tsv), "--tag", "big", "-C", str(exp)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        imported = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run(
            [SKYLAB, "history", "--tag", "big", "-C", str(exp)],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
        )
        shown = time.perf_counter() - started
        print(f"import of {args.rows} rows: {imported:.2f} s (goal <= 30 s); history of them: {shown:.2f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
