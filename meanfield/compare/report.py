"""Reports of a :class:`meanfield.compare.Comparison`: the ``--json`` dictionary and the text
table (metrics, milestones, where the theory stops holding, tolerances, verdict)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from meanfield.compare import Comparison


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def report_dict(cmp: Comparison) -> dict[str, Any]:
    """The ``--json`` report: ``{"verdict", "metrics", "checkpoints" (the milestones),
    "reference", "window", "limits", "differing_parameters", "notes", "simulation",
    "theory"}``."""
    return _clean({
        "verdict": cmp.verdict,
        "metrics": {k: m.to_dict() for k, m in cmp.metrics.items()},
        "checkpoints": cmp.milestones,
        "reference": cmp.reference.label,
        "window": [float(cmp.sim.t[cmp.window].min()), float(cmp.sim.t[cmp.window].max())]
        if cmp.window.any() else None,
        "limits": cmp.limits,
        "differing_parameters": {k: list(v) for k, v in cmp.differing.items()},
        "notes": cmp.notes,
        "simulation": cmp.sim.source,
        "theory": cmp.theory.source or "computed",
    })


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _milestone_lines(cmp: Comparison) -> list[str]:
    lines = ["", "checkpoints (theory training error first below level):",
             f"{'level':>6}{'t':>10}{'gamma sim':>11}{'gamma th':>10}{'err sim':>9}"
             f"{'err th':>9}"]
    ref = "schedule" if cmp.schedule is not None else "flow"
    for row in cmp.milestones:
        lines.append(
            f"{row['level']:>6g}{row['t']:>10.4g}{row['gamma']['simulation']:>11.4g}"
            f"{row['gamma'][ref]:>10.4g}{row['train_error']['simulation']:>9.3g}"
            f"{row['train_error'][ref]:>9.3g}"
        )
    return lines


def format_report(cmp: Comparison) -> str:
    """Human-readable table of the metrics, milestones and limits."""
    lines = [
        f"simulation: {cmp.sim.source}",
        f"theory:     {cmp.theory.source or 'computed'}"
        + ("" if cmp.schedule is None else " (verdicts against it pushed through the "
           "simulation's Euler schedule and initial sample moments)"),
    ]
    if cmp.window.any():
        tw = cmp.sim.t[cmp.window]
        lines.append(f"window:     {tw.min():.4g} <= t <= {tw.max():.4g} "
                     f"({int(cmp.window.sum())} record times)")
    for k, (s, t) in cmp.differing.items():
        lines.append(f"WARNING: {k} differs: simulation {s}, theory {t}")
    lines.append("")
    head = f"{'metric':<12}{'vs theory':>11}{'vs flow':>10}{'sched.eff':>11}{'tol':>8}  verdict"
    lines += [head, "-" * len(head)]
    for name, m in cmp.metrics.items():
        lines.append(
            f"{name:<12}{_fmt(m.value):>11}{_fmt(m.value_flow):>10}"
            f"{_fmt(m.schedule_effect):>11}{_fmt(m.tolerance):>8}  {m.verdict}"
        )
    if cmp.milestones:
        lines += _milestone_lines(cmp)
    if cmp.limits:
        lines += ["", "where the theory stops holding:"] + [f"  - {s}" for s in cmp.limits]
    for note in cmp.notes:
        lines.append(f"note: {note}")
    lines += ["", "tolerances:"] + [f"  {k}: {m.reason}" for k, m in cmp.metrics.items()]
    lines += ["", f"verdict: {cmp.verdict}"]
    return "\n".join(lines)
