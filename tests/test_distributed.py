"""torchrun with 2 gloo processes on the CPU trains one model and writes the same run files as 1 process."""

import json
import subprocess
import sys

import torch

from tledge.train.distributed import DistInfo, ShardedSampler

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
