"""Several ranks on torch.distributed (2 gloo processes on the CPU): the sharded fit equals the
1-rank fit, data-parallel training equals 1-rank training, a killed rank stops the job and
the same command finishes it.

Every rank is a separate process started as torchrun starts them (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT in the environment), running one of the ``_rank_*`` functions below.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from interpretgan import distributed, models
from interpretgan.config import DataConfig, TrainConfig, from_dict
from interpretgan.distributed import World, shard_members
from interpretgan.fitting import fit_generators, layer_dirname
from interpretgan.runs import load_checkpoint, read_json, read_jsonl
from interpretgan.training import train_classifier

from test_gan import TINY, _toy_data, train_toy

HERE = Path(__file__).parent
SRC = HERE.parent / "src"
# One bank per layer and fp32: each member's arithmetic is then exactly that of the member
# fitted alone, and the sharded fit equals the 1-rank fit bit for bit. (Stacked banks, and
# bf16 autocast — the classifier's one pass over every member's explanations rounds
# differently for another batch size — agree only up to float rounding, which Adam with
# β1 = 0 turns into steps of ±lr on near-zero gradients.)
FIT = dataclasses.replace(TINY, stack_layers="off", amp="off")
EXACT = {"rtol": 0.0, "atol": 0.0}
LAYERS4 = ["feature_extractor.relu1", "feature_extractor.pool1", "classifier.relu1", "classifier.fc3"]


# --------------------------------------------------------------------------- ranks
def _start(n: int, call: str, env: dict | None = None) -> list[subprocess.Popen]:
    """``n`` processes, ranks of one world, each running ``call`` (Python, in this module)."""
    port = distributed.free_port()
    procs = []
    for r in range(n):
        e = {**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(n),
             "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
             "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
             **(env or {})}
        procs.append(subprocess.Popen([sys.executable, "-c", f"import test_distributed as t; {call}"],
                                      env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str]]:
    """Wait for every rank (killing them all past ``timeout``): [(exit code, stderr)]."""
    end = time.monotonic() + timeout
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"ranks still running after {timeout} s")
        out.append((p.returncode, err))
    return out


def _run(n: int, call: str, timeout: float = 120, env: dict | None = None) -> None:
    for code, err in _finish(_start(n, call, env), timeout):
        assert code == 0, err[-3000:]


def _toy_classifier(path: Path):
    """The toy data and a classifier that reads them, trained once and saved for the ranks."""
    f, ds, ex = train_toy(3)
    torch.save(f.state_dict(), path)
    return f, ds, ex


def _load_toy(path: str):
    f = models.create("smallcnn")
    f.load_state_dict(torch.load(path))
    ds = _toy_data()
    return f.eval(), ds, ds.images[:64].float() / 255


def _rank_fit(clf: str, out: str, cfg: dict) -> None:
    from interpretgan.config import FitConfig

    f, ds, ex = _load_toy(clf)
    with distributed.process_group("cpu") as world:
        fit_generators(f, ds, ex, from_dict(FitConfig, cfg), out, LAYERS4, progress=False, world=world)
        world.wait_all("test-done")


def _rank_train(cfg: dict, run: str, stop_after: int | None = None) -> None:
    with distributed.process_group("cpu") as world:
        train_classifier(from_dict(TrainConfig, cfg), run, progress=False, stop_after=stop_after,
                         world=world)


def _same_generators(a: Path, b: Path, layers, tol: dict) -> None:
    for n in layers:
        sa = load_checkpoint(a / layer_dirname(n) / "last.pt")
        sb = load_checkpoint(b / layer_dirname(n) / "last.pt")
        assert sa["step"] == sb["step"]
        for k, v in sa["state"].items():
            torch.testing.assert_close(sb["state"][k], v, **tol, msg=f"{n} {k}")


@pytest.fixture(autouse=True)
def _one_thread():
    """The 1-rank references on one thread, as each rank (and no oversubscribed cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- sharding rules
def test_members_are_shared_out_by_cost_and_every_member_once():
    members = [(f"l{i}", (1,)) for i in range(5)]
    costs = [10.0, 1.0, 1.0, 1.0, 9.0]
    shares = [shard_members(members, costs, World(r, 2)) for r in range(2)]
    # heaviest first to the least loaded rank: 10 | 9, 1 | 1 (tie: rank 0) | 1 → 11 and 11
    assert [n for n, _ in shares[0]] == ["l0", "l2"] and [n for n, _ in shares[1]] == ["l1", "l3", "l4"]
    three = [shard_members(members[:2], costs[:2], World(r, 3)) for r in range(3)]
    assert [len(s) for s in three] == [1, 1, 0]  # a spare rank gets nothing


def test_conv1_compressor_is_the_heaviest_member():
    from interpretgan.layers import layer_shapes

    f = models.create("smallcnn").eval()
    shapes = layer_shapes(f, torch.zeros(2, 1, 32, 32), LAYERS4)
    costs = {n: distributed.member_cost(shapes[n], 1, TINY) for n in LAYERS4}
    assert max(costs, key=costs.get) == "feature_extractor.relu1"
    assert costs["feature_extractor.relu1"] > costs["feature_extractor.pool1"] > costs["classifier.fc3"]


# --------------------------------------------------------------------------- fit
@pytest.fixture(scope="module")
def toy_clf(tmp_path_factory):
    path = tmp_path_factory.mktemp("clf") / "toy.pt"
    return path, *_toy_classifier(path)


def test_two_rank_fit_of_four_layers_equals_the_one_rank_fit(toy_clf, tmp_path):
    path, f, ds, ex = toy_clf
    one = tmp_path / "one"
    fit_generators(f, ds, ex, FIT, one, LAYERS4, progress=False)
    two = tmp_path / "two"
    _run(2, f"t._rank_fit({str(path)!r}, {str(two)!r}, {dataclasses.asdict(FIT)!r})")
    # every layer fitted once, by one rank; the summary's inputs are rank 0's
    assert read_json(two / "config.json")["layers"] == LAYERS4
    assert (two / "metrics.jsonl").exists() and (two / "metrics.rank1.jsonl").exists()
    logged = [{k.split("/")[0] for k in read_jsonl(two / name)[-1] if "/" in k}
              for name in ("metrics.jsonl", "metrics.rank1.jsonl")]
    assert logged[0] | logged[1] == set(LAYERS4) and not logged[0] & logged[1]
    _same_generators(one, two, LAYERS4, EXACT)


def test_a_killed_rank_stops_the_fit_and_the_same_command_finishes_it(toy_clf, tmp_path):
    path, f, ds, ex = toy_clf
    cfg = dataclasses.replace(FIT, steps_per_scale=(4, 4, 4, 28), ckpt_every=4)
    out = tmp_path / "two"
    call = f"t._rank_fit({str(path)!r}, {str(out)!r}, {dataclasses.asdict(cfg)!r})"
    env = {"INTERPRETGAN_RANK_TIMEOUT": "4"}
    procs = _start(2, call, env)
    # rank 1's share: wait until it has saved a few steps, then kill it
    mine = [n for n, _ in shard_members([(n, None) for n in LAYERS4],
                                        _costs(f), World(1, 2))]
    last = out / layer_dirname(mine[0]) / "last.pt"
    t0 = time.monotonic()
    while not (last.exists() and load_checkpoint(last)["step"] >= 8):
        assert time.monotonic() - t0 < 90 and procs[1].poll() is None, "rank 1 never saved"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    (code0, err0), _ = _finish(procs, timeout=60)
    assert code0 == distributed.EXIT_PEER_LOST and "rank 1 stopped responding" in err0
    assert time.monotonic() - killed_at < 30
    assert load_checkpoint(last)["step"] < sum(cfg.steps_per_scale)
    # the same command resumes every rank from its last checkpoints and finishes
    _run(2, call, env=env)
    one = tmp_path / "one"
    fit_generators(f, ds, ex, cfg, one, LAYERS4, progress=False)
    _same_generators(one, out, LAYERS4, EXACT)


def _costs(f):
    from interpretgan.layers import layer_shapes

    shapes = layer_shapes(f, torch.zeros(2, 1, 32, 32), LAYERS4)
    return [distributed.member_cost(shapes[n], 1, TINY) for n in LAYERS4]


# --------------------------------------------------------------------------- training
def _train_cfg(shared_cache, method: str, epochs: int = 1) -> TrainConfig:
    return TrainConfig(data=DataConfig(cache_dir=str(shared_cache), train_subset=300, test_subset=50),
                       method=method, epochs=epochs, batch_size=50, lr=0.05, lr_milestones=(),
                       seed=3, attack_steps=2, step_size=0.05)


def _same_model(a: Path, b: Path, tol: dict) -> None:
    sa, sb = (load_checkpoint(p / "checkpoints" / "final.pt")["state_dict"] for p in (a, b))
    for k, v in sa.items():
        torch.testing.assert_close(sb[k], v, **tol, msg=k)


# float sums in another order (and sign steps of the attack that flip on near-zero input
# gradients): measured up to 3e-5 after 2 ATTA epochs on weights of size ~0.001–1.6
TRAIN_TOL = {"rtol": 1e-3, "atol": 1e-4}


@pytest.mark.parametrize("method", ["atta-trades", "trades", "pgd-at"])  # natural: through the CLI below
def test_two_rank_epoch_matches_one_rank(method, mnist_small, shared_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    cfg = _train_cfg(shared_cache, method)
    one = train_classifier(cfg, tmp_path / "one", progress=False)
    _run(2, f"t._rank_train({dataclasses.asdict(cfg)!r}, {str(tmp_path / 'two')!r})")
    _same_model(tmp_path / "one", tmp_path / "two", TRAIN_TOL)
    two = read_json(tmp_path / "two" / "metrics.json")
    assert two["test_accuracy"] == one["test_accuracy"]
    rows = [read_jsonl(tmp_path / d / "metrics.jsonl")[-1] for d in ("one", "two")]
    assert rows[1]["train_loss"] == pytest.approx(rows[0]["train_loss"], rel=1e-5)


def test_atta_shards_resume_on_another_number_of_ranks(mnist_small, shared_cache, tmp_path, monkeypatch):
    """Epoch 1 on 2 ranks (each saves its half of the perturbation store), epoch 2 on 1 rank:
    the same model as 2 epochs on 1 rank."""
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    cfg = _train_cfg(shared_cache, "atta-trades", epochs=2)
    train_classifier(cfg, tmp_path / "one", progress=False)
    _run(2, f"t._rank_train({dataclasses.asdict(cfg)!r}, {str(tmp_path / 'mixed')!r}, stop_after=1)")
    shards = sorted(p.name for p in (tmp_path / "mixed" / "checkpoints" / "shards").iterdir())
    assert shards == ["epoch1-rank0-of-2.pt", "epoch1-rank1-of-2.pt"]
    halves = [load_checkpoint(tmp_path / "mixed" / "checkpoints" / "shards" / s)["state"]["delta"]
              for s in shards]
    assert [len(h) for h in halves] == [150, 150]  # each rank holds only its examples
    assert load_checkpoint(tmp_path / "mixed" / "checkpoints" / "last.pt")["method_state"] is None
    train_classifier(cfg, tmp_path / "mixed", progress=False)  # resumes on 1 rank
    _same_model(tmp_path / "one", tmp_path / "mixed", TRAIN_TOL)
    assert not (tmp_path / "mixed" / "checkpoints" / "shards").exists()


# --------------------------------------------------------------------------- the launcher
def _die_on_rank1() -> None:
    with distributed.process_group("cpu") as world:
        if world.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        world.wait_all("never")  # rank 0 would wait here forever


def _raise_on_rank1() -> None:
    with distributed.process_group("cpu") as world:
        if world.rank == 1:
            raise ValueError("a bad setting on rank 1")
        world.wait_all("never")


def test_a_rank_that_fails_stops_the_others_at_once():
    """Ranks started as torchrun starts them (no launcher to stop the others)."""
    t0 = time.monotonic()
    (code0, err0), (code1, err1) = _finish(_start(2, "t._raise_on_rank1()"), timeout=60)
    assert code1 != 0 and "a bad setting on rank 1" in err1
    assert code0 == distributed.EXIT_PEER_LOST and "rank 1 failed" in err0
    assert time.monotonic() - t0 < 20  # the heartbeat timeout (30 s) was not needed


def test_launcher_names_the_dead_rank_and_stops_the_others():
    t0 = time.monotonic()
    with pytest.raises(distributed.PeerLostError, match="rank 1 .*killed by SIGKILL.*other ranks were stopped"):
        distributed.spawn(2, _die_on_rank1)
    assert time.monotonic() - t0 < 30


def test_train_devices_2_equals_one_process(mnist_small, shared_cache, tmp_path, monkeypatch, capsys):
    from interpretgan.cli import main

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    args = ["-q", "train", "--epochs", "1", "--batch-size", "50", "--train-subset", "300",
            "--test-subset", "50", "--lr", "0.05", "--seed", "3", "--device", "cpu"]
    assert main([*args, "--run-dir", str(tmp_path / "one")]) == 0
    assert main([*args, "--run-dir", str(tmp_path / "two"), "--devices", "2"]) == 0
    _same_model(tmp_path / "one", tmp_path / "two", TRAIN_TOL)
    assert read_json(tmp_path / "two" / "metrics.json")["test_accuracy"] == \
        read_json(tmp_path / "one" / "metrics.json")["test_accuracy"]
