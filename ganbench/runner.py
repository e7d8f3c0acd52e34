"""One run: names -> combinations -> a fresh process per combination -> rows -> table.

Each combination trains in its own spawned process (unless ``isolate=False``): a crash, a CUDA
error or an out-of-memory there becomes a row with status ``failed``/``crashed`` and the others
still run, and the CPU peak-memory figure (peak RSS) belongs to that combination alone. The
table is rewritten atomically after every row, so an interrupt never loses finished rows.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from ganbench.config import RunConfig, resolve
from ganbench.errors import UserError
from ganbench.matrix import Combination, build_matrix, check_available
from ganbench.registry import Registry, get_registry, why_unavailable
from ganbench.results import atomic_write_text, summary_markdown, write_table

FIXED_NOISE_SEED = 20_000  # the grid's noise: the same z for every combination of a run
GRID_SIZE = 64
ATTENTION_SAMPLES = 3


def parse_data(data: str, registry: Registry):
    """'embedded' | 'mnist:DIR' | 'folder:DIR' -> (DatasetSpec, argument or None)."""
    name, _, arg = data.partition(":")
    spec = registry.lookup(name, ("dataset",)).spec
    return spec, (arg if arg else None)


def choose_metrics(cfg: RunConfig, registry: Registry, device: str) -> tuple[list[str], list[str]]:
    """(metric names to run, notes). Default: every metric that can run here."""
    notes = []
    if cfg.metrics is None:
        names = []
        for name, spec in registry.metrics.items():
            reason = why_unavailable(spec, device)
            if reason:
                notes.append(f"metric {name} not run: {reason}")
            else:
                names.append(name)
        return names, notes
    for name in cfg.metrics:
        reason = why_unavailable(registry.lookup(name, ("metric",)).spec, device)
        if reason:
            raise UserError(f"metric {name} cannot run here: {reason}")
    return list(cfg.metrics), notes


def default_run_dir(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = "_".join(cfg.plugins)[:60]
    return Path("results") / "runs" / f"{stamp}-{slug}"


def prepare_run_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to output folder {path}: {exc.strerror or exc}")
    return path


# ------------------------------------------------------------------------------------------
# Inside the worker
# ------------------------------------------------------------------------------------------
def execute(cfg: RunConfig, combo: Combination, run_dir: Path, metric_names: list[str],
            fresh_process: bool) -> dict:
    """Train one combination and return its row (raises on failure; the caller records it)."""
    import torch

    from ganbench.measure import PeakMemory, environment, summarize
    from ganbench.report import save_attention_figure, save_grid
    from ganbench.specs import MetricContext, ModelRequest
    from ganbench.train import Batches, generate, seed_everything, train

    registry = get_registry()
    device = cfg.device
    seed_everything(cfg.seed)
    arch = registry.architectures[combo.architecture]
    loss = registry.losses[combo.loss].factory()
    options = cfg.options.get(combo.attention, {})
    attend = registry.attention[combo.attention].factory(**options) if combo.attention else None
    spec, arg = parse_data(cfg.data, registry)
    data = spec.load(arg, cfg.digits, cfg.image_size)
    if cfg.batch_size > len(data.train):
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} "
                        "training images selected")
    defaults = arch.defaults

    mem = PeakMemory(device, fresh=fresh_process)
    G, D = arch.build(ModelRequest(cfg.image_size, defaults.z_dim, attend=attend))
    G, D = G.to(device), D.to(device)
    G_run, D_run = G, D
    if cfg.compile:
        G_run = torch.compile(G, mode=cfg.compile_mode)
        D_run = torch.compile(D, mode=cfg.compile_mode)
        torch._dynamo.utils.counters.clear()
    batches = Batches(data.train.to(device), cfg.batch_size, cfg.seed)
    if metric_names:
        from ganbench import quality

        sets = quality.eval_sets(data.heldout, data.heldout_labels, cfg.eval_n, cfg.seed)
        context = MetricContext(digits=cfg.digits or tuple(range(10)),
                                image_size=cfg.image_size, device=device, seed=cfg.seed,
                                real_labels=sets.real_labels)

    def score(step: int) -> dict:
        """Quality of G now: sets.n samples against the same held-out half as every row."""
        fake = generate(G, sets.n, defaults.z_dim, device, cfg.seed + 7)
        return quality.evaluate(metric_names, fake, sets.real, context, registry)

    def on_eval(step: int, wall_s: float) -> dict:
        return {"step": step, "wall_s": wall_s, **score(step)}

    bar = _progress_bar(cfg, combo)
    outcome = train(G_run, D_run, loss, batches, steps=cfg.steps, warmup=cfg.warmup,
                    z_dim=defaults.z_dim, g_lr=defaults.g_lr, d_lr=defaults.d_lr,
                    betas=defaults.betas, device=device, dtype=cfg.dtype, seed=cfg.seed,
                    progress=bar.update_to if bar else None,
                    eval_every=cfg.eval_every if metric_names else 0,
                    on_eval=on_eval if metric_names else None)
    if bar:
        bar.close()
    row = {"combo": combo.name, "architecture": combo.architecture, "loss": combo.loss,
           "attention": combo.attention, "status": outcome.status,
           "diverged_at": outcome.diverged_at, "steps": len(outcome.d_losses),
           "batch_size": cfg.batch_size, "image_size": cfg.image_size,
           "warmup": cfg.warmup, "z_dim": defaults.z_dim, "g_lr": defaults.g_lr,
           "d_lr": defaults.d_lr, "betas": list(defaults.betas), "seed": cfg.seed,
           "data": data.source, "digits": ",".join(map(str, cfg.digits)) or "all",
           "n_train": len(data.train), "compile": cfg.compile}
    row.update(summarize(outcome.step_seconds, cfg.batch_size))
    row.update(mem.read())
    tail = slice(-10, None)  # the last ten steps: one step's loss is too noisy to compare
    row["d_loss_last10"] = _mean(outcome.d_losses[tail])
    row["g_loss_last10"] = _mean(outcome.g_losses[tail])
    row["first_step_s"] = outcome.first_step_s
    row["train_wall_s"] = outcome.wall_s
    if cfg.compile:
        row["compile_graph_breaks"] = int(sum(torch._dynamo.utils.counters["graph_break"]
                                              .values()))

    name = combo.name
    fixed = torch.randn(GRID_SIZE, defaults.z_dim, 1, 1,
                        generator=torch.Generator().manual_seed(FIXED_NOISE_SEED))
    if outcome.status == "ok":
        with torch.no_grad():
            G.eval()
            save_grid(G(fixed.to(device)).float().cpu(), run_dir / "samples" / f"{name}.png")
        save_attention_figure(G, fixed[:ATTENTION_SAMPLES].to(device),
                              run_dir / "attention" / f"{name}.png", title=name)
        (run_dir / "models").mkdir(exist_ok=True)
        torch.save({"generator": G.state_dict(), "architecture": combo.architecture,
                    "attention": combo.attention, "image_size": cfg.image_size,
                    "z_dim": defaults.z_dim},
                   run_dir / "models" / f"{name}.G.pt")
        if metric_names:
            t0 = time.perf_counter()
            row.update(score(row["steps"]))
            row["metric_n"] = sets.n
            row["eval_s"] = time.perf_counter() - t0
    if outcome.history:
        _write_history(run_dir, name, outcome.history, outcome.wall_s, row, cfg)
    row.update(environment(device, cfg.dtype))
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _write_history(run_dir: Path, name: str, history: list[dict], wall_s: float, row: dict,
                   cfg: RunConfig) -> None:
    import pandas as pd

    final = {"step": row["steps"], "wall_s": wall_s}
    final.update({k: row[k] for k in history[0] if k in row and k not in final})
    df = pd.DataFrame(history + [final])
    atomic_write_text(run_dir / "curves" / f"{name}.csv", df.to_csv(index=False))
    from ganbench.report import save_curves

    save_curves(df, run_dir / "curves" / f"{name}.png", title=f"{name}: quality over time")
    if cfg.target_fid is not None and "fid_digits" in df:
        hit = df[df["fid_digits"] < cfg.target_fid]
        row["time_to_target_s"] = float(hit["wall_s"].iloc[0]) if len(hit) else float("nan")


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def update_to(self, step: int, d_loss: float, g_loss: float) -> None:
        self.bar.set_postfix(d=f"{d_loss:.3f}", g=f"{g_loss:.3f}", refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(cfg: RunConfig, combo: Combination) -> Optional[_Bar]:
    if cfg.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return _Bar(tqdm(total=cfg.steps, desc=combo.name, unit="step", leave=True))


def _worker(cfg_dict: dict, combo: tuple, run_dir: str, metric_names: list[str], queue) -> None:
    cfg = RunConfig.from_dict(cfg_dict)
    try:
        row = execute(cfg, Combination(*combo), Path(run_dir), metric_names, fresh_process=True)
        queue.put(("ok", row))
    except BaseException as exc:  # reported to the parent as a failed row
        queue.put(("error", f"{type(exc).__name__}: {exc}".splitlines()[0],
                   traceback.format_exc()))


# ------------------------------------------------------------------------------------------
# In the parent
# ------------------------------------------------------------------------------------------
def run_one(cfg: RunConfig, combo: Combination, run_dir: Path, metric_names: list[str]) -> dict:
    """The row of one combination; failures become rows with status and error."""
    base = {"combo": combo.name, "architecture": combo.architecture, "loss": combo.loss,
            "attention": combo.attention}
    if not cfg.isolate:
        try:
            return execute(cfg, combo, run_dir, metric_names, fresh_process=False)
        except UserError:
            raise
        except Exception as exc:
            _log_failure(run_dir, combo, traceback.format_exc())
            return {**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(cfg.to_dict(), dataclasses.astuple(combo),
                                             str(run_dir), metric_names, queue), daemon=True)
    proc.start()
    try:
        message = None
        while message is None:
            try:
                message = queue.get(timeout=1.0)
            except Exception:  # queue.Empty: is the worker still alive?
                if not proc.is_alive():
                    break
        proc.join()
    except BaseException:
        proc.terminate()
        proc.join()
        raise
    if message is None:
        return {**base, "status": "crashed",
                "error": f"worker exited with code {proc.exitcode} before reporting"}
    if message[0] == "ok":
        return message[1]
    _log_failure(run_dir, combo, message[2])
    return {**base, "status": "failed", "error": message[1]}


def _log_failure(run_dir: Path, combo: Combination, text: str) -> None:
    atomic_write_text(run_dir / "logs" / f"{combo.name}.log", text)


def plan(cfg: RunConfig):
    """Validate everything that can be checked before training; returns the resolved pieces."""
    registry = get_registry()
    combos, notes = build_matrix(cfg.plugins, registry)
    cfg = resolve(cfg)
    check_available(combos, registry, cfg.device)
    for combo in combos:
        arch = registry.architectures[combo.architecture]
        if cfg.image_size not in arch.image_sizes:
            sizes = ", ".join(map(str, arch.image_sizes))
            raise UserError(f"{combo.architecture} does not build {cfg.image_size}x"
                            f"{cfg.image_size} images; --image-size must be one of {sizes}")
    metric_names, metric_notes = choose_metrics(cfg, registry, cfg.device)
    kernels = sorted({c.attention for c in combos if c.attention})
    for plugin in cfg.options:
        if plugin not in kernels:
            raise UserError(f"--option {plugin}.…: {plugin} is not an attention kernel of this "
                            f"run (kernels here: {', '.join(kernels) or 'none'})")
    spec, arg = parse_data(cfg.data, registry)
    reason = why_unavailable(spec, cfg.device)
    if reason:
        raise UserError(f"--data {spec.name} cannot be used here: {reason}")
    data = spec.load(arg, cfg.digits, cfg.image_size)  # fail on bad data before any training
    if cfg.batch_size > len(data.train):
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} "
                        "training images selected; lower it or select more digits")
    return cfg, combos, notes + metric_notes, metric_names, data


def run(cfg: RunConfig, echo=print) -> tuple[Path, "object"]:
    """Run every combination; returns (run folder, DataFrame)."""
    cfg, combos, notes, metric_names, data = plan(cfg)
    run_dir = prepare_run_dir(cfg.out or default_run_dir(cfg))
    cfg = dataclasses.replace(cfg, out=run_dir)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
    for note in notes:
        echo(f"note: {note}")
    rows: list[dict] = []
    df = None
    for combo in combos:
        row = run_one(cfg, combo, run_dir, metric_names)
        rows.append(row)
        df = write_table(rows, run_dir)
        if row.get("status") != "ok" and not cfg.quiet:
            echo(f"{combo.name}: {row.get('status')}: {row.get('error', '')}")
    if metric_names:
        rows.append(reference_row(cfg, data, metric_names))
        df = write_table(rows, run_dir)
    echo(summary_markdown(df))
    echo(f"\nresults: {run_dir}")
    return run_dir, df


def reference_row(cfg: RunConfig, data, metric_names: list[str]) -> dict:
    """The 'real data' row: held-out real digits against other held-out real digits."""
    from ganbench import quality
    from ganbench.measure import environment
    from ganbench.specs import MetricContext

    context = MetricContext(digits=cfg.digits or tuple(range(10)), image_size=cfg.image_size,
                            device=cfg.device, seed=cfg.seed)
    row = {"combo": "real data", "status": "reference", "image_size": cfg.image_size}
    scores, n_used = quality.real_reference_row(data.heldout, data.heldout_labels, cfg.eval_n,
                                                context, get_registry(), metric_names,
                                                seed=cfg.seed)
    row.update(scores)
    row["metric_n"] = n_used
    row.update(environment(cfg.device, cfg.dtype))
    return row
