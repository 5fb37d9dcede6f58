"""Run the benchmark cases and print a table.

    python -m benchmarks [CASE ...] [--quick] [--no-ui]

Cases, in this order: efficiency, against_naive, memory_flatness, scaling, first_result, real_scenes
(all of them when none is named). Each writes ``benchmarks/results/<case>.json``; the run writes
``benchmarks/results/summary.json`` and prints a markdown table (case, metric, measured,
target, met?, machine). ``--quick``: small sizes, a smoke run of a few minutes, written under
``benchmarks/results/quick/``. The full-tile cases need ``geoloom sample-data --size tile``;
it is generated once into ``benchmarks/.cache/tile`` (about 1 GB, a few CPU-minutes).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from types import ModuleType
from typing import Any

from benchmarks import against_naive, efficiency, first_result, memory_flatness, real_scenes, scaling
from benchmarks.common import finish_report, machine_line, new_report, now, results_dir, row

CASES: dict[str, ModuleType] = {
    "efficiency": efficiency,
    "against_naive": against_naive,
    "memory_flatness": memory_flatness,  # after against_naive: it reuses that case's full-tile run
    "scaling": scaling,
    "first_result": first_result,
    "real_scenes": real_scenes,
}


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: list[dict[str, Any]], machine: str) -> str:
    """The summary rows as a markdown table."""
    lines = ["| case | metric | measured | target | met? | machine / note |", "| --- | --- | ---: | --- | --- | --- |"]
    for r in rows:
        note = r.get("note") or machine
        lines.append(f"| {r['case']} | {r['metric']} | {fmt(r['measured'])} | {fmt(r['target'])} | {fmt(r['met'])} | {note} |")
    return "\n".join(lines)


def run_case(name: str, quick: bool, shared: dict[str, Any], ui: bool) -> tuple[list[dict[str, Any]], float]:
    """One case; a case that fails becomes a row saying so, and the others still run."""
    t0 = time.perf_counter()
    print(f"== {name}{' (quick)' if quick else ''} ...", flush=True)
    try:
        mod = CASES[name]
        rep = mod.run(quick, shared, ui=ui) if name == "first_result" else mod.run(quick, shared)
        rows = rep["summary"]
    except Exception as exc:
        traceback.print_exc()
        rows = [row(name, "failed", None, None, None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")]
    secs = time.perf_counter() - t0
    print(f"   {name} took {secs:.0f} s", flush=True)
    return rows, secs


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", metavar="CASE", help=f"any of: {', '.join(CASES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    ap.add_argument("--no-ui", action="store_true", help="skip the browser part of first_result")
    args = ap.parse_args()
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    names = [n for n in CASES if n in args.cases] if args.cases else list(CASES)
    started = time.perf_counter()
    summary = new_report("summary", args.quick, {"cases": names, "command": "python -m benchmarks " + " ".join(
        [*args.cases, *(["--quick"] if args.quick else []), *(["--no-ui"] if args.no_ui else [])])})
    shared: dict[str, Any] = {}
    rows, seconds = [], {}
    for name in names:
        case_rows, seconds[name] = run_case(name, args.quick, shared, not args.no_ui)
        rows.extend(case_rows)
    finish_report(summary, started)
    summary.update({"case_seconds": {k: round(v, 1) for k, v in seconds.items()}, "rows": rows,
                    "reports": {n: str(results_dir(args.quick) / f"{n}.json") for n in names}})
    folder = results_dir(args.quick)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    if path.exists() and args.cases:  # a partial run keeps the other cases' rows
        old = json.loads(path.read_text())
        kept = [r for r in old.get("rows", []) if r["case"] not in names]
        order = list(CASES)
        summary["rows"] = sorted(kept + rows, key=lambda r: order.index(r["case"]) if r["case"] in order else len(order))
        summary["case_seconds"] = {**old.get("case_seconds", {}), **summary["case_seconds"]}
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print()
    print(table(summary["rows"], machine_line(summary["machine"])))
    code = summary["code"]
    dirty = " + uncommitted changes" if code["uncommitted_source_changes"] else ""
    print(f"\n{len(names)} case(s) in {summary['wall_s'] / 60:.1f} min ({now()}, geoloom {code['commit']}{dirty}); "
          f"reports in {folder}")


if __name__ == "__main__":
    main()
