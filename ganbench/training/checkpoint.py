"""Training checkpoints: written atomically, verified by SHA-256, loaded without pickle code.

A checkpoint is what :func:`ganbench.training.loop.train` needs to continue a combination exactly where
it stopped: G, D, both optimiser states, the step, the RNG states and the loss history (a plain
dict of tensors, numbers and strings; see ``train.training_state``). On disk it is two files:

- ``RUN_DIR/checkpoints/<combo>.pt``: ``torch.save`` of that dict;
- ``RUN_DIR/checkpoints/<combo>.pt.sha256``: its SHA-256 in ``sha256sum`` format, so a truncated
  or altered file is caught (and ``sha256sum -c`` works by hand).

Both are written with :mod:`ganbench.files.atomic` (temporary file, fsync, rename), with SIGINT/SIGTERM
held back during the two renames: an interrupt leaves the previous checkpoint pair, never a torn
or mismatched one. Loading reads with ``torch.load(weights_only=True)`` only, so a checkpoint can
carry tensors and plain data but never code. Every failure to load is a one-line
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

from ganbench.files import atomic
from ganbench.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"


def checkpoint_path(run_dir: Path, combo_name: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{combo_name}.pt"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` and its SHA-256 beside it, atomically as a pair.

    A failed write raises :class:`ganbench.files.atomic.WriteError` naming the file; the previous
    pair is then untouched."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = Path(path)
    # Both files are complete on disk before either is renamed into place, and a signal
    # between the two renames (which would pair a new .pt with an old checksum) is held back.
    atomic.write_group({path: data, _sidecar(path): f"{digest}  {path.name}\n".encode()})


def load_checkpoint(path: Path) -> dict:
    """The state saved at ``path`` (tensors on the CPU); CheckpointError if it cannot be trusted."""
    import pickle

    import torch

    path = Path(path)
    sidecar = _sidecar(path)
    try:
        data = path.read_bytes()
        expected = sidecar.read_text().split()[0] if sidecar.exists() else None
    except (OSError, IndexError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}".splitlines()[0])
    hint = "delete it to restart that combination from step 0"
    if expected is None:
        raise CheckpointError(f"checkpoint {path} has no {sidecar.name} checksum beside it; "
                              f"{hint}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CheckpointError(f"checkpoint {path} is damaged or altered (SHA-256 {actual[:12]}... "
                              f"does not match {sidecar.name}: {expected[:12]}...); {hint}")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError) as exc:
        reason = " ".join(str(exc).split())[:200]  # torch's messages run over many lines
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely "
                              f"(weights_only): {reason}; {hint}")
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"checkpoint {path} is not a ganbench training checkpoint; {hint}")
    return state


def discard_checkpoint(path: Path) -> None:
    """Remove a checkpoint and its checksum (missing files are fine)."""
    for p in (Path(path), _sidecar(Path(path))):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
