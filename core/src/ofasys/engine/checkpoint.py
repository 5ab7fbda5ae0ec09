"""Checkpoints: a directory of safetensors weights and JSON, written atomically, loaded without pickle.

Layout of ``<run>/checkpoints/step-000100/``::

    config.json          model config, vocabulary, task plans, adaptor slots, plugin versions, file digests
    model.safetensors    model weights
    ema.safetensors      exponential moving average of the weights (when enabled)
    optimizer.safetensors + trainer_state.json   optimizer moments, step, schedule, RNG, data positions

``<run>/checkpoint`` is a symbolic link to the newest complete checkpoint, swapped atomically with
``os.replace``: a crash while saving leaves the previous checkpoint (and the link) untouched. Every file's
SHA-256 is recorded in ``config.json`` and checked on load, so a truncated or tampered file is a clear
:class:`CheckpointError`, never a silent mis-load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

FORMAT = "ofasys-checkpoint"
FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(clean, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc


def model_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict without duplicated storage (tied weights are saved once, under their first name)."""
    seen: dict[int, str] = {}
    out: dict[str, torch.Tensor] = {}
    for k, v in module.state_dict().items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)) if v.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen[key] = k
        out[k] = v
    return out


def load_model_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    # keys absent from the file must be tied aliases of a saved tensor
    tied_ok = set()
    ptrs = {}
    for k, v in expected.items():
        ptrs.setdefault((v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)), []).append(k)
    for names in ptrs.values():
        if any(n in tensors for n in names):
            tied_ok.update(names)
    missing = [k for k in missing if k not in tied_ok]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{where} does not match the model built from its config: "
            f"{len(missing)} missing ({', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}), "
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])}{'...' if len(unexpected) > 4 else ''})")
    for k, v in tensors.items():
        if tuple(expected[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{where}: tensor {k} has shape {tuple(v.shape)}, the model expects "
                                  f"{tuple(expected[k].shape)}")
    module.load_state_dict(tensors, strict=False)


def optimizer_to_tensors(opt: torch.optim.Optimizer, sd: dict | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict (``opt.state_dict()`` unless given) into tensors (safetensors) and JSON."""
    sd = sd if sd is not None else opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{pid}.{name}"] = val
            else:
                scalars.setdefault(str(pid), {})[name] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                           place=None) -> None:
    """Load what :func:`optimizer_to_tensors` wrote; ``place(opt, state)`` lays full tensors out like sharded
    parameters (FSDP)."""
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    for pid, sc in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    if place is not None:
        state = place(opt, state)
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"the optimizer state does not fit this model: {exc}") from exc


def write_checkpoint(run_dir: Path, name: str, files: dict[str, Any], keep: int = 2) -> Path:
    """Write ``files`` (name -> dict of tensors for ``.safetensors``, JSON-able object for ``.json``) as
    ``run_dir/checkpoints/<name>`` atomically and point ``run_dir/checkpoint`` at it. ``config.json`` gets the
    digests of the other files. Older checkpoints beyond ``keep`` are removed."""
    run_dir = Path(run_dir)
    ckpts = run_dir / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ckpts))
    try:
        digests = {}
        for fname, content in files.items():
            if fname == "config.json":
                continue
            path = tmp / fname
            if fname.endswith(".safetensors"):
                save_tensors(content, path)
            else:
                path.write_text(json.dumps(content, indent=1), encoding="utf-8")
            digests[fname] = _sha256(path)
        config = dict(files.get("config.json", {}))
        config.update({"format": FORMAT, "format_version": FORMAT_VERSION, "files": digests})
        (tmp / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        for p in tmp.iterdir():
            with p.open("rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        final = ckpts / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(ckpts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    link = run_dir / "checkpoint"
    tmp_link = run_dir / f".checkpoint.{os.getpid()}.tmp"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(Path("checkpoints") / name, tmp_link)
    if link.exists() and not link.is_symlink():
        raise CheckpointError(f"{link} exists and is not a link made by ofasys; move it away")
    os.replace(tmp_link, link)
    _fsync_dir(run_dir)
    _prune(ckpts, keep, keep_name=name)
    return final


def _prune(ckpts: Path, keep: int, keep_name: str) -> None:
    done = sorted(p for p in ckpts.iterdir() if p.is_dir() and not p.name.startswith("."))
    for p in done[:-keep] if keep > 0 else []:
        if p.name != keep_name:
            shutil.rmtree(p, ignore_errors=True)
    for p in ckpts.iterdir():  # leftovers of interrupted saves
        if p.name.startswith(".") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def resolve(path: Path) -> Path:
    """A checkpoint directory from a run directory, a ``checkpoint`` link or a checkpoint directory."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path.resolve()
    if (path / "checkpoint" / "config.json").is_file():
        return (path / "checkpoint").resolve()
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    raise CheckpointError(f"{path} is not an ofasys checkpoint (no config.json)")


def read_checkpoint(path: Path, verify: bool = True) -> tuple[Path, dict]:
    """Resolve and validate a checkpoint; return (directory, config). File digests are checked."""
    ckpt = resolve(path)
    try:
        config = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{ckpt / 'config.json'} is corrupt: {exc}") from None
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt} is not an ofasys checkpoint (format {config.get('format')!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{ckpt} was written by a newer ofasys (format {config['format_version']}); upgrade")
    if verify:
        for fname, digest in config.get("files", {}).items():
            f = ckpt / fname
            if not f.is_file():
                raise CheckpointError(f"checkpoint {ckpt} is incomplete: {fname} is missing")
            if _sha256(f) != digest:
                raise CheckpointError(f"checkpoint file {f} is truncated or was modified (SHA-256 mismatch)")
    return ckpt, config
