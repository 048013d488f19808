#!/usr/bin/env python3
"""Reads `cargo bench --bench hot_path -- --output-format=json` on stdin,
prints instructions per acquire/release pair for every arm (the 1500-pair
run minus the 500-pair run, over 1000), and fails when the guard adds more
to the model pool's pair than the budget in benches/hot_path_budget.txt
allows (plus 10 %)."""
import json
import pathlib
import sys

PAIRS = {"pairs_0": 500, "pairs_1": 1500}
runs = {}
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    b = json.loads(line)
    ir = 0
    for profile in b["profiles"]:
        for part in profile["data"]["parts"]:
            ir += part["metrics"]["Ir"]["values"]["new"]
    runs[(b["function_name"], PAIRS[b["id"]])] = ir

per_pair = {}
for (arm, n), ir in sorted(runs.items()):
    if n == 500 and (arm, 1500) in runs:
        per_pair[arm] = (runs[(arm, 1500)] - ir) / 1000
for arm, v in per_pair.items():
    print(f"{arm:20} {v:10.0f} instructions per pair")


def added(arm, base):
    return per_pair[arm] - per_pair[base]


for arm, base in [("floor", "raw"), ("guard", "raw"), ("guard_breaker_off", "raw"),
                  ("guard_prometheus", "raw"), ("query_guard", "query_raw"),
                  ("model_guard", "model_raw"), ("model_guard_spans_filtered", "model_raw"),
                  ("model_guard_spans_recorded", "model_raw")]:
    if arm in per_pair and base in per_pair:
        print(f"{arm} - {base}: {added(arm, base):+.0f}")

budget_file = pathlib.Path(__file__).resolve().parent.parent / "benches" / "hot_path_budget.txt"
budget = int(budget_file.read_text().split()[0])
if "model_guard" not in per_pair or "model_raw" not in per_pair:
    sys.exit("hot_path: the model arms did not run")
cost = added("model_guard", "model_raw")
limit = budget * 1.10
print(f"budget: the guard adds {cost:.0f} instructions per pair on the model pool; "
      f"budget {budget} (+10 % = {limit:.0f})")
if cost > limit:
    sys.exit(f"hot_path: over budget: {cost:.0f} > {limit:.0f}")
