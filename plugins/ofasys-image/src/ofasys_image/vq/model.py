"""The vector-quantised autoencoder: conv encoder -> nearest codebook entry (EMA-updated codebook, straight-through
gradients, commitment loss) -> conv decoder. Pixels are in [-1, 1] (OFA's normalisation)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import read_config, resolve

FORMAT = "ofasys-image-vq/1"


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class VQAutoencoder(nn.Module):
    """``downsample`` stride-2 convolutions (image side / 2**downsample codes per side), a codebook of
    ``codebook_size`` vectors of ``code_dim``, and the mirrored decoder.

    ``encode(pixels) -> codes (N, h, w)``; ``decode(codes) -> pixels``; ``forward(pixels) -> (recon, losses)``.
    The codebook follows an exponential moving average of the encodings assigned to each code (decay
    ``ema_decay``); codes unused for a while are re-seeded from encodings of the current batch.
    """

    def __init__(self, codebook_size: int = 256, code_dim: int = 32, channels: int = 64, downsample: int = 2,
                 image_size: int = 32, ema_decay: float = 0.95, commitment: float = 0.25, **_: Any):
        super().__init__()
        self.codebook_size, self.code_dim, self.channels = int(codebook_size), int(code_dim), int(channels)
        self.downsample, self.image_size = int(downsample), int(image_size)
        self.ema_decay, self.commitment = float(ema_decay), float(commitment)
        c = self.channels
        enc: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1)]
        for _ in range(self.downsample):
            enc += [nn.ReLU(), nn.Conv2d(c, c, 4, stride=2, padding=1)]
        enc += [_Res(c), nn.ReLU(), nn.Conv2d(c, self.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(self.code_dim, c, 3, padding=1), _Res(c)]
        for _ in range(self.downsample):
            dec += [nn.ReLU(), nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)]
        dec += [nn.ReLU(), nn.Conv2d(c, 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("codebook", torch.randn(self.codebook_size, self.code_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(self.codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("seeded", torch.tensor(False), persistent=False)

    def config(self) -> dict:
        return {"format": FORMAT, "codebook_size": self.codebook_size, "code_dim": self.code_dim,
                "channels": self.channels, "downsample": self.downsample, "image_size": self.image_size,
                "ema_decay": self.ema_decay, "commitment": self.commitment}

    @property
    def grid(self) -> int:
        return self.image_size // (2 ** self.downsample)

    # ------------------------------------------------------------------ quantisation
    def _nearest(self, z: Tensor) -> Tensor:
        """(M, D) -> (M,) code indices."""
        d = (z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t() + self.codebook.pow(2).sum(1)[None])
        return d.argmin(1)

    def resize(self, pixels: Tensor) -> Tensor:
        if pixels.shape[-1] != self.image_size or pixels.shape[-2] != self.image_size:
            pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="area")
        return pixels

    @torch.no_grad()
    def encode(self, pixels: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, h, w) long codes (resized to ``image_size`` first)."""
        z = self.encoder(self.resize(pixels.float()))
        n, d, h, w = z.shape
        return self._nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).view(n, h, w)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """(N, h, w) codes -> (N, 3, H, W) pixels in [-1, 1]."""
        z = F.embedding(codes.long(), self.codebook).permute(0, 3, 1, 2)
        return self.decoder(z).clamp(-1, 1)

    def forward(self, pixels: Tensor) -> tuple[Tensor, dict]:
        z = self.encoder(pixels)
        n, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        idx = self._nearest(flat.detach())
        q = self.codebook[idx]
        if self.training:
            with torch.no_grad():
                if not bool(self.seeded):  # first batch: the codebook starts as a sample of real encodings
                    pick = torch.randint(0, flat.shape[0], (self.codebook_size,), device=flat.device)
                    self.codebook.copy_(flat.detach()[pick] + 1e-3 * torch.randn_like(self.codebook))
                    self.ema_sum.copy_(self.codebook)
                    self.seeded.fill_(True)
                    idx = self._nearest(flat.detach())
                    q = self.codebook[idx]
                onehot = F.one_hot(idx, self.codebook_size).type_as(flat)
                count = onehot.sum(0)
                self.ema_count.mul_(self.ema_decay).add_(count, alpha=1 - self.ema_decay)
                self.ema_sum.mul_(self.ema_decay).add_(onehot.t() @ flat.detach(), alpha=1 - self.ema_decay)
                total = self.ema_count.sum()
                smoothed = (self.ema_count + 1e-5) / (total + self.codebook_size * 1e-5) * total
                self.codebook.copy_(self.ema_sum / smoothed[:, None])
                dead = self.ema_count < 0.05
                if bool(dead.any()):  # re-seed unused codes from this batch's encodings
                    k = int(dead.sum())
                    pick = torch.randint(0, flat.shape[0], (k,), device=flat.device)
                    self.codebook[dead] = flat.detach()[pick]
                    self.ema_sum[dead] = self.codebook[dead]
                    self.ema_count[dead] = 1.0
        commit = F.mse_loss(flat, q.detach())
        q = flat + (q - flat).detach()  # straight-through
        recon = self.decoder(q.view(n, h, w, d).permute(0, 3, 1, 2))
        rec = F.mse_loss(recon, pixels) + 0.5 * F.l1_loss(recon, pixels)
        used = int(torch.unique(idx).numel())
        return recon, {"loss": rec + self.commitment * commit, "recon": rec, "commit": commit, "used": used}

    # ------------------------------------------------------------------ persistence
    def save(self, path: "str | Path", extra: dict | None = None) -> Path:
        """Write ``path`` (a .json; a directory gets tokenizer.json) and the .safetensors next to it."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".json":
            path.mkdir(parents=True, exist_ok=True)
            path = path / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()
                if k not in ("ema_count", "ema_sum")}
        save_file(keep, str(path.with_suffix(".safetensors")))
        path.write_text(json.dumps({**self.config(), **(extra or {})}, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, spec: "str | Path | None" = None) -> "VQAutoencoder":
        from safetensors.torch import load_file

        from ofasys.errors import CheckpointError

        cfg = read_config(spec)
        _, weights = resolve(spec)
        model = cls(**{k: v for k, v in cfg.items() if k in ("codebook_size", "code_dim", "channels", "downsample",
                                                              "image_size", "ema_decay", "commitment")})
        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"tokenizer weights {weights} could not be read: {exc}") from exc
        state.setdefault("ema_count", model.ema_count)
        state.setdefault("ema_sum", state.get("codebook", model.ema_sum).clone())
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"tokenizer weights {weights} do not match its configuration: {exc}") from exc
        return model.eval()


_CACHE: dict[str, VQAutoencoder] = {}
_LOCK = threading.Lock()


def load_tokenizer(spec: "str | Path | None" = None) -> VQAutoencoder:
    """The tokenizer named by ``spec`` (cached per process; evaluation mode, no gradients)."""
    path, weights = resolve(spec)
    key = f"{path}:{weights.stat().st_mtime_ns}"
    with _LOCK:
        if key not in _CACHE:
            model = VQAutoencoder.load(spec)
            for p in model.parameters():
                p.requires_grad_(False)
            _CACHE[key] = model
        return _CACHE[key]


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB of two (N, 3, H, W) batches in [-1, 1] (peak-to-peak 2)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)


def to_pixels(images: list, size: int) -> Tensor:
    """PIL images -> (N, 3, size, size) in [-1, 1] (bicubic resize)."""
    import numpy as np
    from PIL import Image

    arrs = []
    for img in images:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        arrs.append(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrs).transpose(0, 3, 1, 2).copy())


def to_images(pixels: Tensor) -> list:
    """(N, 3, H, W) in [-1, 1] -> PIL RGB images."""
    import numpy as np
    from PIL import Image

    arr = ((pixels.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]


def reconstruction_psnr(tokenizer: VQAutoencoder, images: list) -> float:
    """Mean PSNR (dB) of the tokenizer's reconstructions of PIL ``images`` at its own resolution."""
    x = to_pixels(images, tokenizer.image_size)
    with torch.no_grad():
        rec = tokenizer.decode(tokenizer.encode(x))
    return float(psnr(rec, x).mean())


__all__ = ["VQAutoencoder", "load_tokenizer", "psnr", "reconstruction_psnr", "to_images", "to_pixels"]
