r"""The degradation experiment's report from a sweep directory: Figure 1, Figure 6, gradient
diagnostics and report.md (Table 6 against the paper, verdicts on the degradation and its fix).

    python -m experiments.degradation --sweep=figure6 --seeds=3
    python -m experiments.report runs/figure6
    python -m experiments.report runs/figure1_smoke --out=/tmp/report

Writes figure1.png, figure6.png and diagnostics.png (each only when the sweep has its nets)
and report.md into --out (default SWEEP_DIR). Runs without summary.json are left out and
listed in the report.
"""

import logging

from absl import app, flags

from experiments import cli

_OUT = flags.DEFINE_string("out", None, "Where the figures and report.md go (default: SWEEP_DIR).")

log = logging.getLogger("experiments.report")


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise app.UsageError("Expected one argument: python -m experiments.report SWEEP_DIR")
    from cnn_jax import report

    for path in report.write(argv[1], _OUT.value):
        log.info("Wrote %s", path)


if __name__ == "__main__":
    cli.run(main)
