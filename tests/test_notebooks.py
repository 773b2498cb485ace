"""The notebooks run top to bottom in a fresh kernel: with smoke=True on the CPU, and with
their defaults on a machine without a network, where they end with one message about the
missing data set."""

import json
import pathlib

import nbformat
import papermill
import pytest

NOTEBOOKS = pathlib.Path(__file__).parent.parent / "notebooks"


def run(notebook: str, tmp_path: pathlib.Path, **parameters) -> nbformat.NotebookNode:
    """Executes the notebook in `tmp_path` (any cell error raises) and returns it executed."""
    out = tmp_path / notebook
    papermill.execute_notebook(NOTEBOOKS / notebook, out, parameters=parameters, cwd=tmp_path,
                               kernel_name="python3", progress_bar=False)
    return nbformat.read(out, as_version=4)


def outputs(notebook: nbformat.NotebookNode) -> list[str]:
    """Each code cell's text output (streams, plain text and markdown), in cell order."""
    texts = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            parts = [o.get("text", "") if o.output_type == "stream"
                     else o.get("data", {}).get("text/markdown", "") for o in cell.outputs]
            texts.append("".join(parts))
    return texts


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_carry_no_outputs_and_have_a_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "smoke = False" in code[0].source


def install_command(path: pathlib.Path, monkeypatch, *, gpu: bool, has: set[str]) -> list[str]:
    """The pip command the notebook's install cell runs on a machine without cnn_jax that has
    the modules in `has` installed (and a GPU if `gpu`); nothing is installed."""
    import importlib.util
    import subprocess

    install_cell = nbformat.read(path, as_version=4).cells[2].source
    assert "pip" in install_cell
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: find_spec(name, *a) if name in has else None)
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 0 if gpu or command[0] != "which" else 1)

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # the cell's default, undone afterwards
    exec(install_cell, {"repository": "https://example.org/cnn_jax"})
    return commands[-1]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_install_cell_keeps_the_runtimes_jax_and_tensorflow(path, monkeypatch):
    colab_gpu = install_command(path, monkeypatch, gpu=True, has={"jax", "tensorflow"})
    assert colab_gpu[-1] == "cnn_jax @ git+https://example.org/cnn_jax"
    bare_gpu = install_command(path, monkeypatch, gpu=True, has=set())
    assert bare_gpu[-1] == "cnn_jax[cuda12,tfds] @ git+https://example.org/cnn_jax"
    cpu = install_command(path, monkeypatch, gpu=False, has={"jax"})
    assert cpu[-1] == "cnn_jax[cpu,tfds] @ git+https://example.org/cnn_jax"


def test_degradation_notebook_trains_restores_and_reports(tmp_path):
    texts = "\n".join(outputs(run("degradation_colab_tpu.ipynb", tmp_path, smoke=True)))

    sweep = tmp_path / "runs" / "degradation"
    for net in ("cifar_plain20", "cifar_plain56", "cifar_resnet20", "cifar_resnet56"):
        summary = json.loads((sweep / net / "seed0" / "summary.json").read_text())
        assert summary["step"] == 30
        assert f"{net} seed 0: train error {summary['train_error']:5.2f}%" in texts
    final = json.loads((sweep / "cifar_resnet56" / "seed0" / "summary.json").read_text())
    assert (f"cifar_resnet56 restored at step 30: test error {final['test_error']:.2f}% "
            f"(the run's summary.json: {final['test_error']:.2f}%)") in texts
    assert all((sweep / name).exists() for name in ("figure1.png", "figure6.png", "report.md"))
    assert "## Test error (Table 6)" in texts


def test_architectures_notebook_tables_every_model(tmp_path):
    from cnn_jax import models

    texts = outputs(run("architectures.ipynb", tmp_path, smoke=True))
    table = next(t for t in texts if t.startswith("| model |"))
    assert all(f"| {name} |" in table for name in models.names())
    assert "| resnet50 | 224x224x3 | 25,557,032 | 25,557,032 | 3.86G | 3.80G |" in table
    assert any("cifar_plain56: block 1" in t and "cifar_resnet56: block 1" in t for t in texts)


def test_degradation_notebook_offline_ends_with_one_message(tmp_path, monkeypatch):
    """The defaults (CIFAR-10 from tfds) on a machine without internet: every connection the
    kernel tries fails, as it would offline."""
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "sitecustomize.py").write_text(
        "import socket\n"
        "def _unreachable(*args, **kwargs):\n"
        "    raise OSError('Network is unreachable')\n"
        "socket.create_connection = _unreachable\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(offline))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))

    texts = outputs(run("degradation_colab_tpu.ipynb", tmp_path))

    messages = [t for t in texts if "error:" in t]
    assert len(messages) == 1 and messages[0].startswith("error: cifar10 is not in tfds data_dir")
    assert "unreachable" in messages[0] and "Traceback" not in "".join(texts)
    after = texts[texts.index(messages[0]) + 1:]
    assert after and not any(after)  # the restore and report cells do nothing
