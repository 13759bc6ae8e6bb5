"""The mutation score of `make mutation`: killed mutants out of all, per module and in total.

Reads mutmut's result files in mutants/ and exits 1 when the total is below the
minimum, so a drop shows. A timeout counts as killed (the tests noticed); a
mutant no fast test reaches counts as surviving.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

MODULES = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]["only_mutate"]
CAUGHT = ("killed", "timeout")


def main(minimum: float) -> int:
    total: Counter[str] = Counter()
    rows = []
    for module in MODULES:
        meta = Path("mutants") / f"{module}.meta"
        if not meta.is_file():
            print(f"no mutation results for {module}; run `make mutation`", file=sys.stderr)
            return 2
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].values()
        counts = Counter(status_by_exit_code[code] for code in codes)
        total += counts
        rows.append((module, counts))
    rows.append(("total", total))
    print(f"{'module':<24} {'killed':>7} {'all':>5} {'score':>7}   other")
    for name, counts in rows:
        caught, everything = sum(counts[s] for s in CAUGHT), sum(counts.values())
        other = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "killed")
        print(f"{name:<24} {caught:>7} {everything:>5} {caught / max(everything, 1):>7.1%}   {other}")
    score = sum(total[s] for s in CAUGHT) / max(sum(total.values()), 1)
    if score * 100 < minimum:
        print(f"mutation score {score:.1%} is below {minimum:g}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 85.0))
