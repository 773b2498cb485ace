"""Fault injection: 20 kill -9 at random moments of one run, then a resume; two runs started
together on one workdir. Both must end with the parameters of an uninterrupted run.

    python -m pytest tests/test_fault_injection.py -m slow -s     # prints what happened
"""

import random
import signal
import time

import pytest

from tests.test_workdir import (assert_same_params, command, finish, rows_without_timing,
                                saved_steps, start, wait_for)

STEPS = 300
# Checkpoints at every log step: a train row averages the steps since the last one, which a
# run resumed from a checkpoint between log steps would not all have seen.
OVERRIDES = {"train.steps": STEPS, "checkpoint.every_steps": 5, "train.log_every_steps": 5,
             "eval.every_steps": 100}


def latest_step(run_dir):
    return (saved_steps(run_dir) or [0])[-1]


@pytest.mark.slow
def test_twenty_kill_9_then_resume_and_two_starts_together_end_as_an_uninterrupted_run(
    tmp_path, idx_dir
):
    began, straight = time.time(), start(command(idx_dir, tmp_path / "straight", **OVERRIDES))
    wait_for(lambda: saved_steps(tmp_path / "straight"), every=0.01)
    start_up_s = time.time() - began  # to the first checkpoint
    finish(straight)
    straight_s = time.time() - began
    # Half the kills come at a random moment of start-up, half at a random moment of the
    # training that follows, at most `slice_s` (1/40 of the training time) after the run's
    # first new checkpoint: each resumed run trains a little further, and the 20 of them do
    # not reach the end.
    slice_s = (straight_s - start_up_s) / 40

    rng, kills = random.Random(17), []
    crashed = tmp_path / "crashed"
    for i in range(20):
        before, started = latest_step(crashed), time.time()
        process = start(command(idx_dir, crashed, **OVERRIDES))
        if i == 0 or rng.random() < 0.5:  # training: a random moment after its first new checkpoint
            wait_for(lambda: latest_step(crashed) > before, every=0.002)
            start_up_s = min(start_up_s, time.time() - started)  # the compilation cache is warm now
            time.sleep(rng.uniform(0, slice_s))
        else:  # start-up: reading the data, restoring the checkpoint, compiling
            time.sleep(rng.uniform(0, start_up_s))
        saving = any(
            p.stat().st_mtime > started
            for p in (crashed / "checkpoints").glob("*.orbax-checkpoint-tmp*")
        )
        process.send_signal(signal.SIGKILL)
        finish(process, returncode=None)
        assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
        phase = "training" if latest_step(crashed) > before or saving else "start-up"
        kills.append((time.time() - started, phase, latest_step(crashed), saving))
    output = finish(start(command(idx_dir, crashed, **OVERRIDES)))
    assert f"finished at step {STEPS}" in output
    assert rows_without_timing(crashed) == rows_without_timing(tmp_path / "straight")
    assert_same_params(crashed, tmp_path / "straight")

    together = tmp_path / "together"
    first, second = (
        start(command(idx_dir, together, **OVERRIDES)),
        start(command(idx_dir, together, **OVERRIDES)),
    )
    outputs = [finish(p, returncode=None) for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 1], outputs
    assert sum("is in use by the run of process" in o for o in outputs) == 1
    assert saved_steps(together) == saved_steps(tmp_path / "straight")
    assert rows_without_timing(together) == rows_without_timing(tmp_path / "straight")
    assert_same_params(together, tmp_path / "straight")

    print(
        f"\nuninterrupted run: {STEPS} steps in {straight_s:.0f} s; "
        f"kills up to {slice_s:.1f} s into a resumed run's training"
    )
    for i, (moment, phase, step, saving) in enumerate(kills, 1):
        print(
            f"kill -9 #{i:2d} {moment:5.1f} s after start, in {phase}: "
            f"latest checkpoint step {step}"
            + (", a checkpoint being written" if saving else "")
        )
    print(
        f"{sum(k[3] for k in kills)} of 20 kills came while a checkpoint was being written; "
        "after the resume, metrics rows and parameters are identical to the uninterrupted run's"
    )
    print(
        f"two starts together: exit codes {codes}, "
        f"checkpoints {saved_steps(together)} as uninterrupted"
    )
