"""`ganbench run --compile step --malloc keep --baseline textbook`, end to end on the CPU.

The row says what was compiled and how long compiling took apart from the step times, and
which allocator setting was in force; the textbook row keeps the book's settings (nothing
compiled, glibc as it comes) whatever the run asks for the others.
"""

import pandas as pd
import pytest

from helpers import call_main, tiny_run_args


@pytest.mark.slow
def test_compiled_step_row_says_what_was_compiled(tmp_path):
    out = tmp_path / "run"
    code, _, err = call_main(["run", *tiny_run_args(plugins="dcgan", steps=4, warmup=2,
                                                    out=out, compile="step", malloc="keep",
                                                    baseline="textbook")])
    assert code == 0, err
    df = pd.read_csv(out / "results.csv").set_index("step")
    book, ours = df.loc["textbook"], df.loc["ganbench"]
    assert not book["compile"] and book["malloc"] == "default"
    assert pd.isna(book["compile_scope"])
    assert ours["compile"] and ours["compile_scope"] == "step" and ours["malloc"] == "keep"
    # dynamo's clock: the first steps compiled D's and G's iterations and both Adam updates
    assert ours["compile_s"] > 0.5
    assert ours["compile_s"] < ours["train_wall_s"]
    # torch's optimizer breaks the graph around step() on purpose (compiled_step.py): >= 2
    assert ours["compile_graph_breaks"] >= 2
    assert ours["speedup_vs_textbook"] > 0
