"""Where training runs: the best device available (cuda, then mps, then cpu), or the one asked for."""

from __future__ import annotations

import torch


def best_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, then cpu; a requested device that is absent is an error, not a silent fallback."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if not available[requested]:
        raise RuntimeError(f"device: {requested} is not available on this machine; use auto or cpu")
    return torch.device(requested)


def available_devices() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        out.insert(0, "cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.insert(0, "mps")
    return out
