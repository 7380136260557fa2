"""ImageNet weights: torchvision's own download + cache, an offline error that says what to fetch,
and `tledge weights add FILE` to install a downloaded file into the cache on air-gapped machines."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from tledge.errors import TledgeError
from tledge.models.imagenet import cache_dir


@dataclass(frozen=True)
class KnownWeights:
    arch: str
    tag: str
    filename: str  # torchvision's file name: <name>-<first 8 hex of sha256>.pth
    url: str

    @property
    def hash_prefix(self) -> str:
        return self.filename.rsplit("-", 1)[-1].split(".")[0]


def known_weights() -> list[KnownWeights]:
    """Every ImageNet weight file of every registered architecture (all tags torchvision lists)."""
    import torchvision

    from tledge.models.backbones import get_spec, list_backbones  # one way: backbones never imports this module

    found = []
    for arch in list_backbones():
        for member in torchvision.models.get_model_weights(get_spec(arch).builder):
            found.append(KnownWeights(arch, member.name, member.url.rsplit("/", 1)[-1], member.url))
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_weights(path: str | Path) -> tuple[KnownWeights, Path]:
    """Verify a downloaded torchvision weight file by its hash and copy it into torch's cache.

    The file is recognised by content (sha256 prefix in torchvision's file name), so a renamed
    download still works; a file that matches no known weights is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise TledgeError(f"weights file not found: {path}")
    digest = sha256_of(path)
    for entry in known_weights():
        if digest.startswith(entry.hash_prefix):
            target = cache_dir() / entry.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            if not (target.exists() and sha256_of(target) == digest):
                tmp = target.with_suffix(".part")
                shutil.copyfile(path, tmp)
                tmp.replace(target)
            return entry, target
    raise TledgeError(
        f"{path.name} (sha256 {digest[:12]}…) matches no torchvision ImageNet weights tledge knows; "
        "download the file named by the offline error message"
    )
