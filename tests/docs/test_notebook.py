"""docs/notebooks/quickstart.ipynb runs, every cell, in a real Jupyter kernel (nbclient with
ipykernel's python3 kernel: this interpreter), as a reader would run it.

Also: the kernel's stop button (an interrupt to its process group) in the middle of a run, then
a resume in the same kernel. Slow (a minute or two each on 2 cores). Their packages are in the
``test`` extra; outside CI a checkout without them skips the tests, in CI (CI set) they fail.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "quickstart.ipynb"
CELL_TIMEOUT_S = 600  # the slowest cell trains two combinations: 71 s on the loaded machine
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _need(module: str):
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"pip install -e '.[test]' for {module}")


def test_the_notebook_is_committed_without_outputs():
    nbformat = _need("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.slow
def test_every_cell_of_the_quickstart_runs(tmp_path, monkeypatch):
    # One OpenMP thread in the kernel and its workers (they inherit this environment): on the
    # shared 2-core machine (load ~12) two threads made a dcgan step at batch 16 take 1.9 s
    # and the notebook 540 s; with one, 101 s. The notebook times nothing that is checked.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nbformat = _need("nbformat")
    nbclient = _need("nbclient")
    _need("ipykernel")
    import ganbench

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # One cell more, in memory only: which ganbench the kernel imported (this checkout's).
    nb.cells.append(nbformat.v4.new_code_cell("import ganbench; print(ganbench.__file__)"))
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on an error

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "a cell did not run"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert code[-1].outputs[0].text.strip() == ganbench.__file__

    def shown(source_start: str) -> list:
        """The outputs of the cell whose code starts with ``source_start``."""
        return next(c for c in code if c.source.startswith(source_start)).outputs

    def html_of(source_start: str) -> str:
        return "".join(o.get("data", {}).get("text/html", "") for o in shown(source_start))

    run_page = html_of("run = ganbench.run(")
    assert "<table" in run_page and "fid_digits" in run_page and "img/s" in run_page
    assert "dcgan+bce" in run_page and "sagan+hinge+eager-attn" in run_page
    assert run_page.count("data:image/png;base64,") == 2  # the two sample grids
    progress = shown("run = ganbench.run(")
    try:
        import ipywidgets  # noqa: F401

        assert any(WIDGET_VIEW in o.get("data", {}) for o in progress), "no notebook bars"
    except ImportError:
        text = "".join(o.get("text", "") for o in progress if o.output_type == "stream")
        assert "dcgan+bce: step" in text  # plain progress lines
    assert any("image/png" in o.get("data", {}) for o in shown("run.attention["))
    assert "verdict" in html_of("second = ganbench.run(")
    errors = "".join(o.get("text", "") for o in shown("from ganbench.errors import UserError"))
    assert "ConfigError: --image-size must be a power of two, got 48" in errors
    assert "did you mean 'steps'?" in errors


RUN_CELL = """
import ganbench
try:
    ganbench.run("dcgan,bce,hinge", steps=30, batch_size=8, image_size=32, warmup=1,
                 device="cpu", metrics="none", checkpoint_every=2, out={out!r})
except KeyboardInterrupt as stop:
    stopped = stop
    raise
"""


def _reply(client, msg_id: str, timeout: float) -> dict:
    """The shell reply to ``msg_id`` (other replies are skipped)."""
    while True:
        reply = client.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]


@pytest.mark.slow
def test_the_stop_button_leaves_a_folder_the_same_kernel_resumes(tmp_path, monkeypatch):
    """The kernel's interrupt (SIGINT to its process group: the kernel and the worker training
    in it) stops the run with its rows on disk; the kernel lives on and resumes it."""
    _need("ipykernel")
    manager = _need("jupyter_client.manager")
    import json
    import time

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # see test_every_cell_of_the_quickstart_runs
    out = tmp_path / "run"
    second = out / "checkpoints" / "dcgan+hinge.pt"
    km, kc = manager.start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        running = kc.execute(RUN_CELL.format(out=str(out)))
        deadline = time.monotonic() + 300
        while not second.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.exists(), "the second combination never checkpointed"
        km.interrupt_kernel()  # the stop button
        stopped = _reply(kc, running, timeout=120)
        assert stopped["status"] == "error" and stopped["ename"] == "RunInterrupted"
        rows = json.loads((out / "results.json").read_text())["rows"]
        assert [r["combo"] for r in rows] == ["dcgan+bce"] and second.exists()

        check = kc.execute("assert stopped.run_dir is not None\n"
                           f"done = ganbench.load({str(out)!r}).resume(quiet=True)\n"
                           "assert done.unfinished == [], done.unfinished")
        assert _reply(kc, check, timeout=600)["status"] == "ok"
        rows = json.loads((out / "results.json").read_text())["rows"]
        assert [(r["combo"], r["status"], r["steps"]) for r in rows] == [
            ("dcgan+bce", "ok", 30), ("dcgan+hinge", "ok", 30)]
        assert rows[1]["resumed_from_step"] >= 2 and not second.exists()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
