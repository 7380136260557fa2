"""ImageNet weights for a backbone through torchvision's own download and cache, and the offline error
that says which file to fetch and where it goes. Knows nothing about the backbone registry (it is given
the spec), so tledge.models.backbones can use it without an import cycle."""

from __future__ import annotations

from pathlib import Path

from tledge.errors import TledgeError


def cache_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_problem(folder: Path) -> str | None:
    """Why torch could not keep downloaded weights in `folder` (a file where a folder goes, no write access),
    naming TORCH_HOME, or None: an offline machine is not blamed for a cache that cannot exist."""
    import os

    ancestor = folder
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    home = os.environ.get("TORCH_HOME")
    setting = f"TORCH_HOME={home}" if home else "torch's default cache (~/.cache/torch; set TORCH_HOME to move it)"
    if not ancestor.is_dir():
        return (f"torch's weight cache {folder} cannot be made: {ancestor} is a file, not a folder ({setting}); "
                "point TORCH_HOME at a folder, or unset it")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"torch's weight cache {folder} cannot be written: no write access to {ancestor} ({setting})"
    return None


def weights_enum(spec):
    import torchvision

    return getattr(torchvision.models.get_model_weights(spec.builder), spec.weights_tag)


def load_imagenet_model(spec, builder, **arch_kwargs):
    """builder(weights=<enum>) through torchvision's cache; offline, name the file and where it goes."""
    enum = weights_enum(spec)
    filename = enum.url.rsplit("/", 1)[-1]
    cached = cache_dir() / filename
    if arch_kwargs:
        raise TledgeError(
            f"ImageNet weights exist only for the standard {spec.name}; drop {sorted(arch_kwargs)} or use --weights none"
        )
    problem = cache_problem(cache_dir())
    if problem and not cached.is_file():
        raise TledgeError(problem)
    try:
        return builder(weights=enum)
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, socket errors, hash mismatch
        if cached.exists():
            raise TledgeError(f"{cached} exists but could not be loaded ({exc}); delete it and retry") from None
        raise TledgeError(
            f"cannot download ImageNet weights for {spec.name} (offline?). Fetch {enum.url} on a connected "
            f"machine, then run: tledge weights add {filename}   (installs it into {cache_dir()})"
        ) from None
