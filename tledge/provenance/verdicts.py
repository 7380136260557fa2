"""Verdict files: `<artifact>.verdicts.json` beside each artifact lists every parity verdict obtained for it,
each with the environment it was obtained in (tledge.provenance.environment). `tledge export` writes the
first one (where it built the artifact); `tledge verify` adds one per environment it runs in. A verdict is
kept only while the artifact file is the one it judged (its sha256).

`unverified_here(artifact, backend_name)` is the check predict, bench and the Python API run on load: it
returns a warning when the artifact has verdicts and none was obtained in an environment that computes as
this one does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tledge.atomic import write_json
from tledge.provenance import environment

SUFFIX = ".verdicts.json"


NUMBERS = ("images", "agreement", "agreement_ci", "acc_reference", "acc_artifact", "acc_delta", "acc_delta_ci",
           "max_rel_diff", "mean_rel_diff", "gains", "losses", "resolvable_drop", "images_needed")


class UnverifiedEnvironment(UserWarning):
    """tledge.load(): the artifact was verified, but never on an environment that computes like this one."""


def verdicts_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SUFFIX)


def artifact_sha(artifact: str | Path) -> str:
    from tledge.staleness import file_sha256

    return file_sha256(artifact)


def read_verdicts(artifact: str | Path, sha: str | None = None) -> list[dict]:
    """The verdicts recorded for this exact file (none when absent, unreadable or for an older file); `sha` is
    the artifact's sha256 when the caller already has it."""
    path = verdicts_path(artifact)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        if data.get("sha256") != (sha or artifact_sha(artifact)):
            return []
        return [v for v in data.get("verdicts", []) if isinstance(v, dict) and "environment" in v]
    except (OSError, ValueError, AttributeError):
        return []


def make_verdict(parity, by: str, env: dict, pack_images: int | None = None, tolerances: dict | None = None,
                 inputs_differ: int = 0) -> dict:
    """One verdict entry from a ParityResult (tledge.verification.parity)."""
    numbers = parity.to_dict()
    return {
        "outcome": parity.outcome,
        "kind": parity.kind,
        "by": by,  # export | verify
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": env,
        "backend": parity.backend,
        **{k: numbers[k] for k in NUMBERS if k in numbers},
        "failures": list(parity.failures),
        "doubts": list(parity.doubts),
        "pack_images": pack_images,
        "tolerances": tolerances,
        "inputs_differ": inputs_differ,
    }


def record(artifact: str | Path, verdict: dict, fresh: bool = False) -> Path:
    """Add `verdict` to the artifact's file, replacing one from the same environment; `fresh` starts the list
    over (a new export of the file)."""
    artifact = Path(artifact)
    sha = artifact_sha(artifact)
    key = environment.numerics_key(verdict["environment"])
    kept = [] if fresh else [v for v in read_verdicts(artifact, sha) if environment.numerics_key(v["environment"]) != key]
    return write_json(verdicts_path(artifact), {"artifact": artifact.name, "sha256": sha,
                                                "verdicts": kept + [verdict]})


def matching(verdicts: list[dict], env: dict) -> list[dict]:
    key = environment.numerics_key(env)
    return [v for v in verdicts if environment.numerics_key(v["environment"]) == key]


def _readable_verdicts(artifact: str | Path) -> list[dict]:
    """The artifact's verdicts; none when its verdict file cannot be read (a warning must not stop a run)."""
    try:
        return read_verdicts(artifact)
    except OSError:
        return []


def unverified_here(artifact: str | Path, backend_name: str) -> str | None:
    """A one-line warning when the artifact was verified, but never in an environment that computes like this
    one (see module doc); None when it was, or when it has no verdicts at all."""
    verdicts = _readable_verdicts(artifact)
    if not verdicts:
        return None
    here = environment.describe(backend_name)
    if matching(verdicts, here):
        return None
    nearest = verdicts[-1]["environment"]
    changes = "; ".join(environment.differences(here, nearest)) or "environment differs"
    return (f"{Path(artifact).name} was verified on {len(verdicts)} other environment(s) (last: "
            f"{environment.short(nearest)}), not on this one ({changes}); its accuracy can differ here: run "
            f"`tledge verify {artifact}`")


def parity_here(artifact: str | Path, backend_name: str) -> str | None:
    """The parity outcome recorded for this file in an environment that computes like this one (within, over,
    inconclusive; the latest), "not verified here" when its verdicts are all from elsewhere, None without any:
    bench's parity column."""
    verdicts = _readable_verdicts(artifact)
    if not verdicts:
        return None
    here = matching(verdicts, environment.describe(backend_name))
    return here[-1]["outcome"] if here else "not verified here"


def rows(artifact: str | Path) -> list[dict]:
    """The verdicts as table rows for `tledge info`."""
    out = []
    for v in read_verdicts(artifact):
        low, high = v.get("acc_delta_ci") or (None, None)
        delta = f"{v.get('acc_delta', 0):+.2f} pt" + (f" ({low:+.2f} to {high:+.2f})" if low is not None else "")
        out.append({"verdict": v["outcome"], "by": v.get("by", "?"), "images": v.get("images"),
                    "agreement": f"{v.get('agreement', 0):.2f}%", "Δacc (95%)": delta,
                    "environment": environment.short(v["environment"]), "when": v.get("when", "")})
    return out
