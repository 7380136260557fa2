"""torchrun with 2 gloo processes on the CPU trains one model and writes the same run files as 1 process."""

import json
import subprocess
import sys
import types

import pytest
import torch

from tledge.training.distributed import DistInfo, ShardedSampler

ARGS = ["--model", "resnet18", "--weights", "none", "--img-size", "32", "--epochs", "2", "--batch-size", "8",
        "--workers", "0", "--augment", "none", "--device", "cpu"]


def test_sharded_sampler_splits_one_permutation_between_ranks():
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    shards = [list(ShardedSampler(10, DistInfo(rank, 3, rank), gen())) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded to equal length
    everything = torch.randperm(10, generator=gen()).tolist()
    assert sorted(set(shards[0] + shards[1] + shards[2])) == list(range(10))
    assert shards[0][0] == everything[0] and shards[1][0] == everything[1]


def run_cli(args, nproc):
    if nproc == 1:
        cmd = [sys.executable, "-m", "tledge", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "tledge", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_two_process_gloo_run_matches_single_process_outputs(make_image_folder, tmp_path):
    data = make_image_folder(per_class=12, size=32)
    project = tmp_path / "runs"
    single = run_cli(["train", str(data), *ARGS, "--project", str(project), "--name", "one"], 1)
    assert single.returncode == 0, single.stderr[-2000:]
    double = run_cli(["train", str(data), *ARGS, "--project", str(project), "--name", "two"], 2)
    assert double.returncode == 0, double.stderr[-2000:]
    one, two = project / "one", project / "two"
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    assert sorted(p.name for p in project.iterdir()) == ["one", "two"]  # rank 1 wrote no run folder
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m1.keys() == m2.keys() and m2["num_samples"] == m1["num_samples"]
    assert m2["epochs_run"] == 2 and 0.0 <= m2["accuracy"] <= 1.0
    assert double.stdout.count("epoch   1/2") == 1  # only rank 0 prints


# ----------------------------------------------------------------------------------------- call order (stand-ins)
class RecordingDist:
    """Stands in for torch.distributed and records the order of calls (no processes, no NCCL)."""

    def __init__(self, calls):
        self.calls = calls
        self.initialized = False
        self.ReduceOp = types.SimpleNamespace(SUM="sum")

    def is_initialized(self):
        return self.initialized

    def init_process_group(self, backend, rank, world_size, timeout=None):
        self.calls.append(("init_process_group", backend, rank, world_size, timeout))
        self.initialized = True

    def broadcast_object_list(self, box, src=0):
        self.calls.append(("broadcast", box[0]))

    def barrier(self):
        self.calls.append(("barrier",))

    def destroy_process_group(self):
        self.calls.append(("destroy_process_group",))
        self.initialized = False


@pytest.fixture
def recorded(monkeypatch):
    from tledge.training import distributed

    calls = []
    monkeypatch.setattr(distributed, "dist", RecordingDist(calls))
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    return calls


def test_each_rank_selects_its_gpu_before_nccl_starts(recorded):
    from tledge.training import distributed

    distributed.init(DistInfo(rank=3, world_size=4, local_rank=1), "cuda")
    assert [c[0] for c in recorded] == ["set_device", "init_process_group"]
    assert recorded[0] == ("set_device", 1) and recorded[1][1:4] == ("nccl", 3, 4)
    assert recorded[1][4] == distributed.group_timeout() and recorded[1][4].total_seconds() >= 30 * 60
    distributed.broadcast("x", DistInfo(3, 4, 1))
    assert recorded.index(("set_device", 1)) < recorded.index(("broadcast", "x"))


def test_gloo_does_not_touch_cuda(recorded):
    from tledge.training import distributed

    distributed.init(DistInfo(rank=0, world_size=2, local_rank=0), "cpu")
    assert [c[0] for c in recorded] == ["init_process_group"] and recorded[0][1] == "gloo"


def test_shutdown_barrier_only_after_success(recorded):
    from tledge.training import distributed

    distributed.init(DistInfo(0, 2, 0), "cpu")
    distributed.shutdown(success=False)
    assert [c[0] for c in recorded[1:]] == ["destroy_process_group"]
    distributed.init(DistInfo(0, 2, 0), "cpu")
    distributed.shutdown(success=True)
    assert [c[0] for c in recorded[-2:]] == ["barrier", "destroy_process_group"]


def test_rank0_error_leaves_the_group_without_a_collective(recorded, monkeypatch, make_image_folder, tmp_path):
    """Rank 0 fails after the process group exists: its error must come out, not a barrier that waits for
    ranks sitting in a broadcast or an all-reduce."""
    from tledge.errors import TledgeError
    from tledge.training import fit
    from tledge.training.config import TrainConfig
    from tledge.training.fit import train_run

    def refuse(*args, **kwargs):  # a failure after the group exists (unreadable data, disk full, ...)
        raise TledgeError("taken: the data folder vanished")

    monkeypatch.setattr(fit, "build_splits", refuse)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    data = make_image_folder(per_class=6, size=16)
    config = TrainConfig(data=str(data), model="resnet18", weights="none", img_size=16, epochs=1, batch_size=4,
                         workers=0, augment="none", device="cpu", project=str(tmp_path / "runs"), name="taken")
    with pytest.raises(TledgeError, match="taken"):
        train_run(config)
    assert [c[0] for c in recorded] == ["init_process_group", "destroy_process_group"]
