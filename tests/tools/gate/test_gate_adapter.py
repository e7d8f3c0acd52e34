"""tools/gate/adapter.py: one call drives the training loop of every layout of the package.

Synthetic trees stand for each layout (their ``train`` reports what it was given), and the
real loop of this checkout is driven for one step, whatever layout it has today.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

COMMON = '''
import json
class Batches:
    def __init__(self, images, batch_size, seed):
        self.args = (images, batch_size, seed)
def seed_everything(seed):
    pass
def generate(G, n, z_dim, device, seed, batch_size=256):
    return ("generated", n, z_dim, device, seed)
'''

FLAT = COMMON + '''
def train(G, D, loss, batches, *, steps, warmup, z_dim, g_lr, d_lr, betas, device, seed=0,
          dtype="fp32"):
    return {"api": "keywords", "steps": steps, "g_lr": g_lr, "seed": seed, "dtype": dtype}
'''

SETTINGS = COMMON + '''
from dataclasses import dataclass, field
@dataclass(frozen=True)
class TrainSettings:
    steps: int
    warmup: int
    z_dim: int
    g_lr: float
    d_lr: float
    betas: tuple
    device: str
    dtype: str = "fp32"
    seed: int = 0
    eval_every: int = 0
    checkpoint_every: int = 0
    step_kind: str = "ganbench"
    cuda_graph: bool = False
@dataclass
class TrainHooks:
    progress: object = None
def train(G, D, loss, batches, settings, hooks=None, resume=None):
    assert isinstance(settings, TrainSettings) and hooks is None and resume is None
    return {"api": "settings", "steps": settings.steps, "g_lr": settings.g_lr,
            "seed": settings.seed, "dtype": settings.dtype}
'''

LAYOUTS = {
    "flat": {"ganbench/train.py": FLAT},
    "keywords": {"ganbench/training/__init__.py": "", "ganbench/training/loop.py": FLAT},
    "settings": {"ganbench/training/__init__.py": "", "ganbench/training/loop.py": SETTINGS},
}

DRIVE = '''
from tools.gate import treeimport, adapter
treeimport.install({tree!r})
try:
    loop = adapter.find_loop()
    out = loop.train("G", "D", "loss", "batches", steps=3, warmup=0, z_dim=4, g_lr=0.5,
                     d_lr=0.1, betas=(0.0, 0.9), device="cpu", seed=7)
    gen = loop.generate("G", n=5, z_dim=4, device="cpu", seed=1)
    print(json.dumps({{"layout": loop.layout, "describe": loop.describe(), "train": out,
                      "generate": list(gen), "batches": list(loop.Batches("i", 2, 3).args)}}))
except adapter.AdapterError as exc:
    print(json.dumps({{"error": str(exc)}}))
'''


def _tree(root: Path, files: dict[str, str]) -> Path:
    files = {"pyproject.toml": "", "ganbench/__init__.py": "", **files}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _drive(run_python, tree: Path) -> dict:
    out = run_python("import json\n" + DRIVE.format(tree=str(tree)))
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("layout,module", [("flat", "ganbench.train"),
                                           ("keywords", "ganbench.training.loop"),
                                           ("settings", "ganbench.training.loop")])
def test_every_layout_is_driven_the_same_way(tmp_path, run_python, layout, module):
    got = _drive(run_python, _tree(tmp_path / layout, LAYOUTS[layout]))
    assert got["layout"] == layout and got["describe"] == f"{module}.train ({layout})"
    assert got["train"] == {"api": "settings" if layout == "settings" else "keywords",
                            "steps": 3, "g_lr": 0.5, "seed": 7, "dtype": "fp32"}
    assert got["generate"] == ["generated", 5, 4, "cpu", 1]
    assert got["batches"] == ["i", 2, 3]


def test_a_settings_field_the_gate_does_not_know_is_an_error_naming_it(tmp_path, run_python):
    loop = SETTINGS.replace("    device: str\n", "    device: str\n    precision_policy: str\n")
    got = _drive(run_python, _tree(tmp_path / "t", {"ganbench/training/__init__.py": "",
                                                    "ganbench/training/loop.py": loop}))
    assert "precision_policy" in got["error"] and "requires" in got["error"]


def test_a_loop_that_fails_to_import_is_an_error_not_another_layout(tmp_path, run_python):
    # The new module exists but needs a module this tree lacks: falling back to the old
    # layout would measure the wrong thing (or nothing); the reason must be named.
    broken = "import ganbench.training.not_there\n" + SETTINGS
    files = {**LAYOUTS["flat"], "ganbench/training/__init__.py": "",
             "ganbench/training/loop.py": broken}
    got = _drive(run_python, _tree(tmp_path / "t", files))
    assert "ganbench.training.loop does not import" in got["error"]
    assert "not_there" in got["error"]


def test_a_tree_without_a_training_loop_is_an_error(tmp_path, run_python):
    got = _drive(run_python, _tree(tmp_path / "t", {"ganbench/other.py": ""}))
    assert got["error"].startswith("no training loop in this tree")
    assert "ganbench.training.loop" in got["error"] and "ganbench.train" in got["error"]


def test_this_checkouts_real_loop_trains_one_step(package_copy, run_python):
    """The adapter against the real code of this checkout (whichever layout it has now)."""
    tree = package_copy()
    out = run_python(f"""
        import torch
        from tools.gate import treeimport, adapter, workload
        treeimport.install({str(tree)!r})
        torch.set_num_threads(1)
        G, D, d, loss = workload.build_models("dcgan", None, "cpu", seed=0)
        images = torch.rand(64, 1, workload.IMAGE_SIZE, workload.IMAGE_SIZE) * 2 - 1
        outcome = workload.run_train(G, D, d, loss, workload.make_batches(images, 16, 0), 1,
                                     "cpu", seed=0)
        assert len(outcome.d_losses) == 1, outcome
        treeimport.assert_from_tree({str(tree)!r})
        print(adapter.loop().describe())
    """)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith(")")
