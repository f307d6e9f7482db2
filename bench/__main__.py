"""`python -m bench` (`make bench`): every benchmark of facegate, one report.

    python -m bench              full sizes: parts 1-3 take ~15 min on 2 busy cores, the purge part
                                 (100,000-point gallery, a subject on up to 10,000 assets) longer
    python -m bench --quick      small sizes: a smoke run in minutes
    python -m bench --only NAME  one part: models, video, e2e, scaleout, gallery or purge

Writes bench/out/results.json, bench/out/*.png and bench/out/report.md; a run of every part
also publishes the report as bench/report.md with its plots in bench/plots/.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .harness import ROOT, Context, load_average, machine, now_utc, versions
from .parts import PARTS
from .report import plot, render

OUT = ROOT / "bench" / "out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run in minutes")
    parser.add_argument("--only", choices=sorted(PARTS), help="run this part only")
    parser.add_argument("--out", type=Path, default=OUT, help="where results, plots and report go")
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON", help="only rewrite the report from these"
    )
    parser.add_argument("--note", help="a line for the top of the report (with --render: added to it)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render:
        saved = json.loads(args.render.read_text())
        if args.note:
            saved["note"] = args.note
        publish(saved, args.out, whole="--only" not in saved["command"])
        return 0
    ctx = Context(quick=args.quick, out=args.out)
    names = [args.only] if args.only else list(PARTS)
    run: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": now_utc(),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "load_average_start": load_average(),
        "versions": versions(),
    }
    if args.note:
        run["note"] = args.note
    ctx.say(f"bench ({run['mode']}): {', '.join(names)}; load average {run['load_average_start']}")
    failed = []
    for name in names:
        load_before, start = load_average(), time.monotonic()
        try:
            figures = PARTS[name].run(ctx)
        except Exception as exc:  # one broken part must not lose the others' figures
            traceback.print_exc()
            figures = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
        figures["elapsed_s"] = round(time.monotonic() - start, 1)
        figures["load_average"] = {"start": load_before, "end": load_average()}
        ctx.results[name] = figures
        ctx.say(f"{name}: {'FAILED' if name in failed else 'done'} in {figures['elapsed_s']} s")
    run |= {
        "finished_at": now_utc(),
        "elapsed_s": round(time.monotonic() - ctx.started, 1),
        "load_average_end": load_average(),
    }
    run["versions"] |= ctx.versions
    run["parts"] = ctx.results
    (args.out / "results.json").write_text(json.dumps(run, indent=2) + "\n")
    publish(run, args.out, whole=not args.only)
    ctx.say(f"report: {args.out / 'report.md'}" + ("" if args.only else " and bench/report.md"))
    return 1 if failed else 0


def publish(run: dict[str, Any], out: Path, whole: bool) -> None:
    """Plots and report.md into ``out``; a run of every part also into bench/report.md + bench/plots/."""
    plots = plot(run, out)
    (out / "report.md").write_text(render(run, plots, plot_dir=""))
    if whole:
        published = ROOT / "bench" / "plots"
        published.mkdir(exist_ok=True)
        for name in plots:
            shutil.copy(out / name, published / name)
        (ROOT / "bench" / "report.md").write_text(render(run, plots, plot_dir="plots/"))


if __name__ == "__main__":
    sys.exit(main())
