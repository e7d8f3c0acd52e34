"""``ganbench.run()``, ``ganbench.load()`` and :class:`Run`: a run folder as a Python object.

``ganbench run`` goes through :func:`execute` too (ganbench.commands.run), so a run started from
a notebook and one started from the shell train, write and refuse the same way: each
combination in its own worker process, the table rewritten after every row, the folder locked,
another run's folder refused with the command that continues it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Union

from ganbench.api import options as run_options
from ganbench.errors import ConfigError

PathLike = Union[str, Path]
SUMMARY_CSV = "summary.csv"  # the table over seeds, once a run has several (written beside)


def _silent(*args, **kwargs) -> None:
    """The API's ``echo``: the table is the returned Run, not text on stdout."""


def execute(cfg, *, resume: bool = False, retry_failed: bool = False, force: bool = False,
            echo=_silent) -> tuple["Run", Any]:
    """Train what ``cfg`` asks (with ``resume``: continue cfg.out); returns (its :class:`Run`,
    the table it wrote as a DataFrame, None on a torchrun rank other than 0).

    The one path for both front ends; ``echo`` receives the printed results (the CLI passes
    ``print``). A UserError names a bad request before any training; Ctrl-C or SIGTERM raise
    ganbench.sweep.resume.RunInterrupted once the worker is stopped, the finished rows on disk.
    """
    from ganbench.sweep.runner import run as run_sweep

    run_dir, table = run_sweep(cfg, echo=echo, resume=resume, retry_failed=retry_failed,
                               force=force)
    return Run(run_dir), table


def run(plugins: Any = None, steps: Optional[int] = None, *, resume: Optional[PathLike] = None,
        force: bool = False, retry_failed: bool = False, **options: Any) -> "Run":
    """Train and measure every combination of ``plugins``, as ``ganbench run``; returns the Run.

    ``plugins``: names as a list or comma-separated text ("dcgan,sagan"). ``steps``: training
    steps (None: the device's default). ``options``: any other ``ganbench run`` option, named
    with underscores (``batch_size=8``, ``image_size=32``, ``eval_n=50``, ``out="runs/a"``,
    ``metrics="none"``, ``in_process=True``), checked by the same code as the CLI: a bad one
    raises ganbench.errors.ConfigError (a UserError) with the message ``ganbench run`` prints.
    ``resume``: a run folder to continue (then only quiet, in_process, jobs, columns and
    ``retry_failed`` may be given). ``force``: start afresh in an ``out`` folder that holds
    another run. Without it such a folder is refused, with the command that continues it.
    An interrupt (the notebook's stop button) raises RunInterrupted (a KeyboardInterrupt)
    once the worker has stopped; the folder then resumes with ``ganbench.run(resume=DIR)``.
    Several ranks (``nproc``) are for the shell: torchrun would replace this process.
    """
    given = {name: value for name, value in (("plugins", plugins), ("steps", steps))
             if value is not None}
    given.update(options)
    if retry_failed:
        given["retry_failed"] = True
    if force:
        given["force"] = True
    run_options.check_names(given)
    if given.get("nproc") not in (None, 1):
        raise ConfigError("--nproc execs torchrun, which would replace this Python process; "
                          "start data-parallel runs from the shell: ganbench run ... --nproc N")
    cfg = run_options.run_config(given, resume)
    if resume is not None:
        from ganbench.sweep.resume import check_world_size

        check_world_size(Path(resume), cfg.world_size, 1)
    try:
        return execute(cfg, resume=resume is not None, retry_failed=retry_failed,
                       force=force)[0]
    except KeyboardInterrupt as exc:
        where = getattr(exc, "run_dir", None)
        if where is not None:
            print(f"ganbench: interrupted by {exc.args[0]}; finished rows are in {where}; "
                  f"continue with: ganbench.run(resume={str(where)!r}) or, from the shell, "
                  f"ganbench run --resume {where}", file=sys.stderr)
        raise


def load(run_dir: PathLike) -> "Run":
    """Open a run folder (finished or interrupted) made by ``ganbench run`` or
    ``ganbench.run()``. UserError (one line) when it holds no run."""
    from ganbench.errors import UserError

    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder")
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: no config.json there; is it a folder made by `ganbench run`?")
    return Run(path)


def read_results(path: PathLike):
    """The table of a run folder, its results.json/.csv, or a bench-attention folder or file,
    as a DataFrame (``ganbench report`` reads through this). UserError if it is none of these."""
    from ganbench.results.store import read_table

    path = Path(path)
    if path.is_dir() and not any((path / n).exists() for n in ("results.json", "results.csv")):
        for name in ("attention-bench.json", "attention-bench.csv"):
            if (path / name).exists():
                return read_table(path / name)
    return read_table(path)


class Run:
    """A run folder opened from Python; ``dir`` is its path. Every property reads the folder
    when asked, so a Run taken before a resume shows the rows written since.

    In Jupyter a Run shows itself as its table (units in the headers, as ``ganbench run``
    prints it) with the sample grids beside it.
    """

    def __init__(self, run_dir: PathLike):
        self.dir = Path(run_dir)

    def __repr__(self) -> str:
        return f"ganbench.load({str(self.dir)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and self.dir.resolve() == other.dir.resolve()

    __hash__ = None  # type: ignore[assignment]  (a folder's contents change: not a dict key)

    # -- what it holds ----------------------------------------------------------------------
    @property
    def table(self):
        """The results table (results.json) as a DataFrame: one row per combination (per seed
        once runs have seeds) and the "real data" reference row."""
        return read_results(self.dir)

    @property
    def summary(self):
        """The table over seeds (summary.csv) as a DataFrame, or None while the run has none."""
        import pandas as pd

        path = self.dir / SUMMARY_CSV
        return pd.read_csv(path) if path.is_file() else None

    @property
    def settings(self):
        """The run's settings (a ganbench.config.RunConfig, from config.json): what ran."""
        from ganbench.sweep.resume import load_run_config

        return load_run_config(self.dir)

    @property
    def combos(self) -> list[str]:
        """The trained combinations with a row, in table order (not the reference row)."""
        table = self.table
        if "combo" not in table:
            return []
        keep = table["status"] != "reference" if "status" in table else True
        return [str(c) for c in table.loc[keep, "combo"]]

    @property
    def unfinished(self) -> Optional[list[str]]:
        """The combinations the run planned that have no final row yet (an interrupted run's;
        [] when finished), or None when the plan cannot be rebuilt (a plugin gone)."""
        from ganbench.registry import get_registry
        from ganbench.sweep.matrix import build_matrix
        from ganbench.sweep.resume import finished_rows, unfinished
        from ganbench.sweep.trials import make_trials

        try:
            cfg = self.settings
            combos, _ = build_matrix(cfg.plugins, get_registry())
            if cfg.baseline:
                from ganbench.training.textbook import baseline_combos

                combos = baseline_combos(combos, get_registry()) + combos
            trials = make_trials(combos, cfg.training_seeds)
            rows = finished_rows(self.dir, trials, cfg.seed)
        except Exception:  # only a display hint: a broken plugin must not hide the table
            return None
        return [trial.stem for trial in unfinished(trials, rows, cfg.seed)]

    @property
    def samples(self):
        """combination -> its 8x8 sample grid (a PIL image; the same noise for every one)."""
        from ganbench.api.display import Images

        return Images.from_folder(self.dir / "samples", self._order())

    @property
    def attention(self):
        """combination -> its attention maps (a PIL image; architectures with attention)."""
        from ganbench.api.display import Images

        return Images.from_folder(self.dir / "attention", self._order())

    @property
    def curves(self) -> dict:
        """combination -> its quality curve (DataFrame: step, wall_s, one column per metric),
        for runs made with ``eval_every``; {} otherwise."""
        from ganbench.results.html import read_curves

        return read_curves(self.dir)

    def _order(self) -> list[str]:
        try:
            return self.combos
        except Exception:  # a folder without a table yet still shows its pictures
            return []

    # -- what it does -----------------------------------------------------------------------
    def compare(self, other: Union["Run", PathLike], fail_on: Optional[str] = None,
                metrics: Optional[list[str]] = None):
        """This run (old) against ``other`` (new): a Comparison with the verdicts of
        ``ganbench compare THIS OTHER`` (``fail_on``: its --fail-on rules, e.g.
        "img_per_s:-10%")."""
        from ganbench.api.compare import comparison

        other_dir = other.dir if isinstance(other, Run) else Path(other)
        return comparison(self.dir, other_dir, fail_on, metrics)

    def report_html(self, path: Optional[PathLike] = None) -> str:
        """The run's self-contained HTML page (``ganbench report --html``) as text; with
        ``path`` it is also written there."""
        from ganbench.results.html import build_html, write_html

        if path is None:
            return build_html(self.dir)
        return Path(write_html(self.dir, Path(path))).read_text(encoding="utf-8")

    def resume(self, retry_failed: bool = False, **options: Any) -> "Run":
        """Continue this run (``ganbench.run(resume=self.dir, ...)``); returns it."""
        return run(resume=self.dir, retry_failed=retry_failed, **options)

    # -- Jupyter ----------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        from ganbench.api.display import run_html

        return run_html(self)
