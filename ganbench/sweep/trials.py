"""Trials: one combination trained under one seed, the unit a sweep runs, records and resumes.

A run trains every combination under every seed of ``RunConfig.training_seeds``; each pair is
a :class:`Trial`. Its row in results.csv has the combination's name in ``combo`` (so the rows
of one combination group together) and the seed in ``seed``; (combo, seed) is the row's key
for resume.

File names: a trial's files (samples, attention, models, checkpoints, logs, curves) are named
by its :attr:`Trial.stem`: the combination's name when the run has one seed (the names every
run had before ``--seeds``), ``<combo>.seed<S>`` when it has several, e.g.
``samples/dcgan+bce.seed3.png``, ``models/dcgan+bce.seed3.G.pt`` (``ganbench sample RUN
--combo dcgan+bce.seed3`` reads that one), ``checkpoints/dcgan+bce.seed3.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ganbench.sweep.matrix import Combination

SEED_TAG = ".seed"


@dataclass(frozen=True)
class Trial:
    """``combo`` trained under ``seed``; ``tagged`` when the run has several seeds (then the
    seed is part of every file name). Reads like its Combination (name, architecture, loss,
    attention, step), so code that takes a combination takes a trial too."""

    combo: Combination
    seed: int
    tagged: bool = False

    @property
    def name(self) -> str:
        """The combination's name: the row's ``combo``."""
        return self.combo.name

    @property
    def stem(self) -> str:
        """The name of this trial's files and progress line (see the module docstring)."""
        return f"{self.combo.name}{SEED_TAG}{self.seed}" if self.tagged else self.combo.name

    @property
    def key(self) -> tuple[str, int]:
        return (self.combo.name, self.seed)

    @property
    def architecture(self) -> str:
        return self.combo.architecture

    @property
    def loss(self) -> str:
        return self.combo.loss

    @property
    def attention(self) -> Optional[str]:
        return self.combo.attention

    @property
    def step(self) -> str:
        return self.combo.step

    def identity(self) -> dict:
        """The columns that say which trial a row belongs to (every row has them, a failed
        one included)."""
        return {"combo": self.name, "architecture": self.architecture, "loss": self.loss,
                "attention": self.attention, "seed": self.seed}


def make_trials(combos: list[Combination], seeds: tuple[int, ...]) -> list[Trial]:
    """Every combination under every seed, combination by combination (the table's order)."""
    tagged = len(seeds) > 1
    return [Trial(combo, seed, tagged) for combo in combos for seed in seeds]


def row_key(row: dict, default_seed: int) -> tuple:
    """(combo, seed) of a row; a row written without a seed (a failed row of a run made before
    ``--seeds``) belongs to the run's one seed, ``default_seed``."""
    seed = row.get("seed")
    return (row.get("combo"), default_seed if seed is None else int(seed))


def in_plan_order(rows: list[dict], trials: list[Trial], default_seed: int) -> list[dict]:
    """Rows sorted as the trials were planned (a combination's seeds together), whatever order
    they finished in; rows of no trial (the reference row) go last."""
    rank = {trial.key: i for i, trial in enumerate(trials)}
    return sorted(rows, key=lambda row: rank.get(row_key(row, default_seed), len(rank)))
