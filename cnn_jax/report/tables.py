"""report.md's tables and verdicts: Table 6 against the paper, plain vs ResNet training
error per depth (Figure 6), and whether the degradation and its fix were reproduced.

Every number of ours comes from the sweep's summary.json and diagnostics.jsonl files.
"""

import math

from cnn_jax.report import runs as runs_lib
from cnn_jax.report.runs import Stats, Sweep

# He et al. 2015, Table 6: CIFAR-10 test error (%) with augmentation, best of the runs.
PAPER_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# The paper publishes no plain-net table: third-party readings of Figure 6 (left), approximate.
PAPER_PLAIN_FIGURE6 = {20: 9.5, 32: 10.0, 44: 12.0, 56: 13.5}
PAPER_DATASET, PAPER_STEPS = "cifar10", 64_000


def paper_error(net: str) -> tuple[float, str] | None:
    """The paper's test error (%) of a net and where it comes from ("Table 6" or "Figure 6")."""
    info = runs_lib.net_info(net)
    if info and info[0] == "resnet" and info[1] in PAPER_TABLE6:
        return PAPER_TABLE6[info[1]], "Table 6"
    if info and info[0] == "plain" and info[1] in PAPER_PLAIN_FIGURE6:
        return PAPER_PLAIN_FIGURE6[info[1]], "Figure 6"
    return None


def ordered_nets(sweep: Sweep) -> list[str]:
    """Plain nets by depth, then ResNets by depth, then any other nets by name."""
    known = [sweep.net(kind, d) for kind in ("plain", "resnet") for d in sweep.depths(kind)]
    return known + sorted(n for n in sweep.runs if n not in known)


def format_stats(stats: Stats) -> str:
    """"12.34 ± 0.56" (sample std over seeds), "12.34" for one seed, "–" for none."""
    if stats.n == 0:
        return "–"
    return f"{stats.mean:.2f}" + (f" ± {stats.std:.2f}" if stats.n > 1 else "")


def table6(sweep: Sweep) -> str:
    """Table 6 style: net, parameters, our test error (mean ± std, n), the paper's, difference."""
    lines = ["| net | params | test error % (ours) | n | paper % | ours − paper |",
             "|---|---:|---:|---:|---:|---:|"]
    for net in ordered_nets(sweep):
        runs = sweep.runs[net]
        ours = runs_lib.final(runs, "test_error")
        params = sorted({r.summary["params"] for r in runs if "params" in r.summary})
        paper = paper_error(net)
        paper_text = "–" if paper is None else (
            f"{paper[0]:.2f}" if paper[1] == "Table 6" else f"~{paper[0]:.1f} (Fig. 6)")
        difference = "–" if paper is None or ours.n == 0 else f"{ours.mean - paper[0]:+.2f}"
        lines.append(f"| {runs_lib.label(net)} | {'/'.join(f'{p:,}' for p in params) or '–'} | "
                     f"{format_stats(ours)} | {ours.n} | {paper_text} | {difference} |")
    return "\n".join(lines)


def training_error_table(sweep: Sweep) -> str:
    """Final training error (mean ± std over seeds) of the plain net and ResNet of each depth."""
    lines = ["| depth | plain train error % | n | ResNet train error % | n | ResNet − plain |",
             "|---:|---:|---:|---:|---:|---:|"]
    for depth in sorted(set(sweep.depths("plain")) | set(sweep.depths("resnet"))):
        plain, resnet = (_final(sweep, kind, depth, "train_error") for kind in ("plain", "resnet"))
        both = plain.n and resnet.n
        difference = f"{resnet.mean - plain.mean:+.2f}" if both else "–"
        lines.append(f"| {depth} | {format_stats(plain)} | {plain.n} | {format_stats(resnet)} | "
                     f"{resnet.n} | {difference} |")
    return "\n".join(lines)


def gradient_table(sweep: Sweep) -> str:
    """Per-stage gradient norms at the last diagnostics step (mean over seeds); "" if none."""
    nets = [n for n in ordered_nets(sweep) if runs_lib.diagnostic_keys(sweep.runs[n], "grad_norm/")]
    if not nets:
        return ""
    keys = runs_lib.diagnostic_keys([r for n in nets for r in sweep.runs[n]], "grad_norm/")
    stages = [k.split("/", 1)[1] for k in keys]
    lines = ["| net | step | " + " | ".join(stages) + f" | {stages[0]} / {stages[-1]} |",
             "|---|---:|" + "---:|" * (len(stages) + 1)]
    for net in nets:
        curves = [runs_lib.curve(sweep.runs[net], k, "diagnostics") for k in keys]
        last = [c.mean[-1] if c is not None else math.nan for c in curves]
        step = max(int(c.steps[-1]) for c in curves if c is not None)
        ratio = last[0] / last[-1] if last[-1] else math.nan
        lines.append(f"| {runs_lib.label(net)} | {step} | " + " | ".join(f"{v:.3g}" for v in last)
                     + f" | {ratio:.3g} |")
    return "\n".join(lines)


def degradation_verdict(sweep: Sweep) -> str:
    """Reproduced when the deepest plain net ends with a higher training error than the
    shallowest (Figure 1, Figure 6 left)."""
    depths = sweep.depths("plain")
    if len(depths) < 2:
        return ("**Degradation: not tested**: needs two plain depths; the sweep has "
                f"{_names('plain', depths)}.")
    shallow, deep = depths[0], depths[-1]
    train = [_final(sweep, "plain", d, "train_error") for d in (shallow, deep)]
    test = [_final(sweep, "plain", d, "test_error") for d in (shallow, deep)]
    higher = train[1].mean > train[0].mean
    status = "reproduced" if higher else "not reproduced"
    return (f"**Degradation: {status}.** plain-{deep}'s final training error, "
            f"{format_stats(train[1])}% (n={train[1].n}), is "
            f"{'higher' if higher else 'not higher'} than plain-{shallow}'s, "
            f"{format_stats(train[0])}% (n={train[0].n}){_spread(*train)}; test error "
            f"{format_stats(test[1])}% vs {format_stats(test[0])}%.")


def fix_verdict(sweep: Sweep) -> str:
    """Reproduced when the deepest ResNet ends with lower training and test error than the
    shallowest (Figure 6 middle, Table 6); partly when only one of the two is lower."""
    depths = [d for d in sweep.depths("resnet") if d < 1000]  # 1202 overfits in the paper too
    if len(depths) < 2:
        return ("**Fix: not tested**: needs two ResNet depths; the sweep has "
                f"{_names('resnet', depths)}.")
    shallow, deep = depths[0], depths[-1]
    parts, lower = [], []
    for key, name in (("train_error", "training error"), ("test_error", "test error")):
        small, big = (_final(sweep, "resnet", d, key) for d in (shallow, deep))
        lower.append(big.mean < small.mean)
        parts.append(f"{name} {format_stats(big)}% vs {format_stats(small)}% "
                     f"({'lower' if lower[-1] else 'not lower'}{_spread(small, big)})")
    status = ("reproduced on training and test error" if all(lower) else "not reproduced"
              if not any(lower) else "partly reproduced, on "
              + ("training" if lower[0] else "test") + " error only")
    return f"**Fix: {status}.** ResNet-{deep} vs ResNet-{shallow}: " + "; ".join(parts) + "."


def same_depth_verdict(sweep: Sweep) -> str:
    """At the deepest depth with both nets: the ResNet's final training error vs the plain's."""
    both = sorted(set(sweep.depths("plain")) & set(sweep.depths("resnet")))
    if not both:
        return ""
    depth = both[-1]
    plain, resnet = (_final(sweep, kind, depth, "train_error") for kind in ("plain", "resnet"))
    word = "lower" if resnet.mean < plain.mean else "not lower"
    return (f"**Same depth ({depth} layers):** ResNet-{depth}'s final training error, "
            f"{format_stats(resnet)}%, is {word} than plain-{depth}'s, {format_stats(plain)}%.")


def settings(sweep: Sweep) -> list[str]:
    """Bullet lines: what sweep.json says was run, what the summaries say, and skipped runs."""
    record, runs = sweep.record, [r for rs in sweep.runs.values() for r in rs]
    lines = []
    if record:
        overrides = record.get("overrides", {})
        overrides = ", ".join(f"`{k}={v}`" for k, v in overrides.items()) or "none"
        lines += [f"Sweep: {', '.join(record.get('nets', []))}; "
                  f"{record.get('seeds', '?')} seed(s) each.",
                  f"Config argument: `{record.get('arg')}`; overrides: {overrides}."]
    else:
        lines.append("No sweep.json: nets and seeds found in the directory.")
    datasets = _datasets(sweep)
    steps = sorted({int(r.summary.get("step", 0)) for r in runs})
    lines.append(f"Finished runs: {len(runs)}; dataset {', '.join(datasets)}; "
                 f"{'/'.join(f'{s:,}' for s in steps)} steps.")
    if datasets != [PAPER_DATASET] or steps[0] < PAPER_STEPS:
        lines.append(f"The paper trained on {PAPER_DATASET} for {PAPER_STEPS:,} iterations; this "
                     "sweep did not, so the paper's column is a reference, not a target.")
    if sweep.skipped:
        lines.append(f"Skipped (no summary.json, unfinished?): {', '.join(sweep.skipped)}.")
    return lines


def markdown(
    sweep: Sweep, figures: dict[str, str | None], analyses: list[str] | None = None
) -> str:
    """The whole report.md; `figures` maps a figure's title to its file name (None: not drawn);
    `analyses`: lines on the runs' lesion studies and loss landscapes."""
    verdicts = [degradation_verdict(sweep), fix_verdict(sweep), same_depth_verdict(sweep)]
    parts = [f"# Degradation experiment (He et al. 2015) on {', '.join(_datasets(sweep))}", "",
             f"Sweep: `{sweep.directory}`", "", "## Verdicts", ""]
    parts += [f"- {v}" for v in verdicts if v]
    parts += ["", "## Test error (Table 6)", "", table6(sweep), "",
              "Mean ± sample std over seeds at the end of training. Paper: ResNets from Table 6; "
              "plain nets (~) are third-party readings of Figure 6 (left), the paper has no table.",
              "", "## Final training error, plain vs ResNet (Figure 6)", "",
              training_error_table(sweep)]
    gradients = gradient_table(sweep)
    if gradients:
        parts += ["", "## Gradient norms per stage", "", gradients, "",
                  "On one fixed training batch at the last diagnostics step, mean over seeds. "
                  "Vanishing gradients would show as a first-stage norm far below the last's in "
                  "the deep plain nets."]
    if analyses:
        parts += ["", "## Why residual nets train: lesions and loss landscapes", ""]
        parts += [f"- {line}" for line in analyses]
    parts += ["", "## Figures", ""]
    parts += [f"- {title}: [{name}]({name})" if name else f"- {title}: not drawn (no such nets)"
              for title, name in figures.items()]
    parts += ["", "## Settings", ""] + [f"- {line}" for line in settings(sweep)]
    return "\n".join(parts) + "\n"


def _datasets(sweep: Sweep) -> list[str]:
    return sorted(
        {str(r.summary.get("dataset", "?")) for runs in sweep.runs.values() for r in runs}
    )


def _final(sweep: Sweep, kind: str, depth: int, key: str) -> Stats:
    net = sweep.net(kind, depth)
    return runs_lib.final(sweep.runs[net], key) if net else Stats(math.nan, math.nan, 0)


def _spread(a: Stats, b: Stats) -> str:
    """", within the seeds' spread" when the gap of the means is below either std."""
    stds = [s.std for s in (a, b) if not math.isnan(s.std)]
    if stds and abs(a.mean - b.mean) < max(stds):
        return f", a gap of {abs(a.mean - b.mean):.2f} points, within the seeds' spread"
    return ""


def _names(kind: str, depths: list[int]) -> str:
    return ", ".join(runs_lib.label(f"{kind}{d}") for d in depths) or "none"
