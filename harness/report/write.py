"""A trajectory file's report: figures, report.json and report.md, in a folder that defaults
to `<run folder>/<run name>_report/` (the `report` command is harness.report.cli).

The analysis streams the file in chunks of frames (harness.report.analysis), so a
6,001-frame Thimble file needs no more memory than a 10-frame one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from harness.report.analysis import DEFAULT_CHUNK, Analysis, analyse, summarize
from harness.report.figures import make_figures

log = logging.getLogger(__name__)

SET_LABELS = {"live_never_input": "live-but-never-input"}


def default_report_dir(run: Path) -> Path:
    return run.parent / f"{run.stem}_report"


def markdown(summary: dict, figures: list[str]) -> str:
    every = summary.get("record_every", 1)
    lines = [f"# Report: {summary.get('run') or summary['path']}", "", f"File: {summary['path']}", "",
             f"{summary['frames']} frames up to step {summary['last_step']}"
             + (f" (a frame every {every} steps: changes are per frame)" if every > 1 else "") + "; "
             f"{'tied' if summary['tied'] else 'untied'}; {summary['dead_tokens']:,} dead and "
             f"{summary['live_tokens']:,} live tokens"
             + (f", {summary['live_never_input_tokens']:,} of them never an input in the run's batches"
                if "live_never_input_tokens" in summary else "") + ".", ""]
    loss = summary.get("training", {}).get("loss")
    if loss:
        lines += [f"Training loss {loss['first']:.4g} at the first recorded frame, {loss['last']:.4g} at the last.", ""]
    for name, t in summary["tensors"].items():
        lines += [f"## {name}", "", "| | dead | live |", "| --- | --- | --- |"]
        rows = [("mean displacement from step 0 (final)", "final_displacement_mean"),
                ("mean comoving displacement (final)", "final_comoving_mean"),
                ("cloud radius at step 0", "radius_start"), ("cloud radius (final)", "radius_final"),
                ("centroid drift (final)", "centroid_drift_final"),
                ("share of steps pointing outward (mean; chance 0.5)", "outward_fraction_mean"),
                ("share of coordinates changed at the last step", "changed_fraction_last")]
        for label, key in rows:
            cells = [_fmt(t.get(s, {}).get(key)) for s in ("dead", "live")]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
        dips = [f"{s}: {'yes' if t[s]['radius_dip']['dips'] else 'no'}"
                f" (min {t[s]['radius_dip']['min_relative']:+.2%} at frame {t[s]['radius_dip']['min_frame']})"
                for s in ("dead", "live") if s in t]
        lines += ["", f"Radius dips before it grows: {'; '.join(dips)}.", ""]
        for s, frozen in t["last_moved_step"].items():
            label = SET_LABELS.get(s, s)
            lines.append(f"- {label}: {moved_sentence(label, frozen)}")
        if "indicator_auroc" in t:
            auc = t["indicator_auroc"]
            lines.append(f"- indicator AUROC (cosine to the mean dead row): {auc['first']:.3f} at step 0, "
                         f"{auc['last']:.3f} at the end, best {auc['max']:.3f}.")
        lines.append("")
    if "E_minus_W" in summary:
        d = summary["E_minus_W"]
        lines += ["## E − W", "", f"‖E − W‖_F at the end: all {d['all']:.4g}, dead {d['dead']:.4g}, "
                  f"live {d['live']:.4g}.", ""]
    lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def moved_sentence(label: str, frozen: dict) -> str:
    """When a token set last moved, in words; a set none of whose tokens ever moved says so."""
    if frozen["max"] == 0:
        return f"none of its {frozen['never_moved']:,} tokens ever moved."
    return (f"{frozen['never_moved']:,} tokens never moved; the last move of a {label} token was at step "
            f"{frozen['max']} (median last move {frozen['median']:g}, counting never as 0).")


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.4g}"


def write_report(run: str | Path, out: str | Path | None = None, chunk: int = DEFAULT_CHUNK,
                 progress: bool = False) -> dict[str, Path]:
    """Analyse `run` and write its figures and summaries; returns {file stem: path}."""
    run = Path(run)
    out = Path(out) if out is not None else default_report_dir(run)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    a: Analysis = analyse(run, chunk=chunk, progress=progress)
    summary = summarize(a)
    written: dict[str, Path] = {}
    for stem, fig in make_figures(a).items():
        path = out / f"{stem}.png"
        fig.savefig(path, dpi=110)
        written[stem] = path
    summary["seconds"] = round(time.perf_counter() - start, 2)
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(summary, [p.name for p in written.values()]), encoding="utf-8")
    written["report.json"], written["report.md"] = out / "report.json", out / "report.md"
    log.info("report of %s (%d frames) in %.1f s -> %s", run, summary["frames"], summary["seconds"], out)
    return written
