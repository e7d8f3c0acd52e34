"""Training checkpoints: one self-checking file, the previous good one kept, loaded without code.

A checkpoint is what :func:`ganbench.training.loop.train` needs to continue a combination exactly
where it stopped: G, D, both optimiser states, the step, the RNG states and the loss history (a
plain dict of tensors, numbers and strings; see ``training_state``).

On disk, ``RUN_DIR/checkpoints/<combo>.pt`` is one file: a header line, then the bytes of
``torch.save(state)``::

    GANBENCH-CHECKPOINT 1 sha256=<64 hex digits> bytes=<length>\\n<torch.save bytes>

The checksum travels inside the file it checks, so no crash can pair a new state with an old
checksum (the earlier two-file format could: a SIGKILL between its two renames left a new .pt
beside the old .sha256, and --resume then refused the checkpoint). A truncated or altered file
fails the check.

Saving keeps the previous good checkpoint as ``<combo>.pt.prev`` until the new one is complete:
the new file is written and fsynced under a temporary name, then the current one is renamed to
``.prev`` and the new one into place (SIGINT/SIGTERM held back for the two renames). Whatever
kills the writer, at least one complete checkpoint remains, and :func:`load_checkpoint` falls
back to ``.prev`` when the newest one is missing or fails its check, so a resume loses at most
one checkpoint interval rather than restarting from step 0.

Loading reads with ``torch.load(weights_only=True)`` only, so a checkpoint can carry tensors
and plain data but never code. Every failure to load is a one-line :class:`CheckpointError`
naming the file. Checkpoints of the earlier format (``<combo>.pt`` + ``<combo>.pt.sha256``)
still load.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Optional

from ganbench.files import atomic
from ganbench.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
MAGIC = b"GANBENCH-CHECKPOINT"
FORMAT_VERSION = 1
_HEADER = re.compile(rb"^GANBENCH-CHECKPOINT (\d+) sha256=([0-9a-f]{64}) bytes=(\d+)\n")
_HEADER_MAX = 160  # bytes: the header line is ~110
PREVIOUS = ".prev"    # <combo>.pt.prev: the last good checkpoint before the newest
LEGACY_SUM = ".sha256"  # <combo>.pt.sha256: the sidecar of the earlier two-file format
HINT = "delete it to restart that combination from step 0"


def checkpoint_path(run_dir: Path, combo_name: str) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"{combo_name}.pt"


def previous_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + PREVIOUS)


def _sidecar(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + LEGACY_SUM)


def combos_with_checkpoints(run_dir: Path) -> list[str]:
    """Names of the combinations with a checkpoint (newest or previous) in ``run_dir``."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    names = {p.name[:-len(".pt")] for p in folder.glob("*.pt")}
    names |= {p.name[:-len(".pt" + PREVIOUS)] for p in folder.glob("*.pt" + PREVIOUS)}
    return sorted(names)


def encode(state: dict) -> bytes:
    """The bytes of a checkpoint file holding ``state`` (header + torch.save)."""
    payload = atomic.torch_bytes(state)
    digest = hashlib.sha256(payload).hexdigest()
    return b"%s %d sha256=%s bytes=%d\n" % (MAGIC, FORMAT_VERSION, digest.encode(),
                                            len(payload)) + payload


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path``, keeping the checkpoint it replaces as ``path.prev``.

    A failed write raises :class:`ganbench.files.atomic.WriteError` naming the file; the
    checkpoints already there are then untouched."""
    path = Path(path)
    data = encode(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.temp_path_for(path)
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, atomic.FILE_MODE)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise atomic.WriteError(path, exc) from exc
        with atomic.signals_deferred():
            try:
                if path.exists():
                    os.replace(path, previous_path(path))
                os.replace(tmp, path)
            except OSError as exc:
                raise atomic.WriteError(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # gone already after a successful rename
    with contextlib.suppress(FileNotFoundError):
        _sidecar(path).unlink()  # an earlier format's checksum no longer describes this file
    atomic.fsync_dir(path.parent)


def _payload(path: Path, data: bytes) -> bytes:
    """The torch.save bytes of a checkpoint file, checked; CheckpointError if they fail."""
    if data.startswith(MAGIC):
        match = _HEADER.match(data[:_HEADER_MAX])
        if match is None:
            raise CheckpointError(f"checkpoint {path} has a damaged header; {HINT}")
        version, expected, length = int(match.group(1)), match.group(2).decode(), \
            int(match.group(3))
        if version > FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {path} is format {version}, newer than this "
                                  f"ganbench reads ({FORMAT_VERSION}); update ganbench")
        payload = data[match.end():]
        if len(payload) != length:
            raise CheckpointError(f"checkpoint {path} is truncated or extended ({len(payload)} "
                                  f"bytes after the header, which says {length}); {HINT}")
    else:  # the earlier format: the checksum in a sidecar file
        sidecar = _sidecar(path)
        try:
            expected = sidecar.read_text().split()[0] if sidecar.exists() else None
        except (OSError, IndexError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"cannot read checkpoint checksum {sidecar}: "
                                  f"{' '.join(str(exc).split())}")
        if expected is None:
            raise CheckpointError(f"checkpoint {path} carries no checksum (no "
                                  f"{MAGIC.decode()} header, no {sidecar.name} beside it); "
                                  f"{HINT}")
        payload = data
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise CheckpointError(f"checkpoint {path} is damaged or altered (SHA-256 {actual[:12]}... "
                              f"does not match the recorded {expected[:12]}...); {HINT}")
    return payload


def read_checkpoint(path: Path) -> dict:
    """The state in the one file ``path`` (tensors on the CPU); CheckpointError if it cannot
    be trusted. No fallback: see :func:`load_checkpoint`."""
    import pickle

    import torch

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}")
    payload = _payload(path, data)
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message ends with advice to load with weights_only=False: exactly the
        # wrong advice for a file that tried to smuggle code in. Say what happened instead.
        raise CheckpointError(f"checkpoint {path} was refused: it holds Python objects other "
                              "than tensors and plain data, which the safe loader does not "
                              "build; nothing in it ran. Delete it unless you know where it "
                              "came from") from None
    except (RuntimeError, ValueError, EOFError, OSError) as exc:
        reason = " ".join(str(exc).split())[:200]  # torch's messages run over many lines
        raise CheckpointError(f"checkpoint {path} cannot be read ({reason}); {HINT}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"checkpoint {path} is not a ganbench training checkpoint; {HINT}")
    return state


def load_checkpoint(path: Path, fallback: bool = True) -> dict:
    """The newest trustworthy state for ``path``: the file itself, or (``fallback``, when it is
    missing or fails its check) the previous good one, ``path.prev``. CheckpointError (one
    line) when neither can be trusted; the error about the newest file is the one raised."""
    state, _ = load_with_fallback(path) if fallback else (read_checkpoint(path), None)
    return state


def load_with_fallback(path: Path) -> tuple[dict, Optional[str]]:
    """(state, note): as :func:`load_checkpoint`, with a one-line note when the previous
    checkpoint was used instead of the newest (None when the newest was fine)."""
    path = Path(path)
    prev = previous_path(path)
    try:
        return read_checkpoint(path), None
    except CheckpointError as newest:
        if not prev.exists():
            raise
        try:
            state = read_checkpoint(prev)
        except CheckpointError:
            raise newest from None
        return state, (f"{str(newest).removesuffix('; ' + HINT)}; continuing from the "
                       f"previous checkpoint, {prev.name}, at step {state['step']}")


def keep_only_good(path: Path) -> Optional[str]:
    """Before a resume (holding the run's lock): when the newest checkpoint is missing or
    fails its check but the previous one is good, make the previous one the newest (the bad
    file is deleted) so the next save cannot push a bad file into ``.prev``. Returns the note
    to show, or None when nothing changed. CheckpointError when nothing usable is left."""
    path = Path(path)
    if not path.exists() and not previous_path(path).exists():
        return None
    state, note = load_with_fallback(path)
    if note is not None:
        with atomic.signals_deferred():
            os.replace(previous_path(path), path)
        atomic.fsync_dir(path.parent)
    return note


def discard_checkpoint(path: Path) -> None:
    """Remove a checkpoint, its previous one and any checksum sidecar (missing files are
    fine)."""
    for p in (Path(path), previous_path(Path(path)), _sidecar(Path(path))):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
