"""The main job end to end on tiny settings: stages, caching, redo on change, report."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from interpretgan.config import RunConfig
from interpretgan.pipeline import Stages, run_main
from interpretgan.runs import read_json

TINY_TRAIN = {"epochs": 1, "lr_milestones": (), "data.train_subset": 256, "data.test_subset": 200,
              "batch_size": 64, "eval_attack": None, "lr": 0.05}
TINY_FIT = {"code_dim": 8, "g_channels": (8, 8, 8, 8), "d_channels": (8, 8, 8, 8), "c_width_mult": 0.25,
            "steps_per_scale": (1, 1, 1, 3), "batch_size": 16, "train_subset": 128, "eval_images": 32,
            "generator_seeds": (0,)}  # one seed (the quick preset's two are set over by tiny_cli)


def tiny(**kw) -> RunConfig:
    return RunConfig(train_overrides=TINY_TRAIN, fit_overrides=TINY_FIT, attack="pgd-2",
                     dstar_images=40, explain_images=2,
                     layers=("feature_extractor.pool2", "classifier.fc3"), **kw)


def test_stages_skip_and_redo(tmp_path):
    st = Stages(tmp_path)
    calls = []
    out = tmp_path / "o.txt"

    def work():
        calls.append(1)
        out.write_text("x")

    st.run("a", {"v": 1}, [out], work)
    st.run("a", {"v": 1}, [out], work)
    assert calls == [1]
    st.run("a", {"v": 2}, [out], work, clean=[out])
    assert calls == [1, 1]
    out.unlink()
    st.run("a", {"v": 2}, [out], work)  # output missing: redo
    assert calls == [1, 1, 1]


def tiny_cli(root, device: str) -> list[str]:
    """``interpretgan run`` arguments giving :func:`tiny`'s config."""
    c = tiny()
    sets = [f"{prefix}{k}={json.dumps(v)}" for prefix, group in (("train.", c.train_overrides),
                                                                  ("fit.", c.fit_overrides))
            for k, v in group.items()]
    sets += [f"attack={c.attack}", f"explain_images={c.explain_images}"]
    return ["-q", "run", "--device", device, "--run-dir", str(root), "--layers", ",".join(c.layers),
            "--dstar-images", str(c.dstar_images), *(a for kv in sets for a in ("--set", kv))]


STAGES = {f"{stage}__{key}.json" for stage in ("train", "dstar", "fit", "diagnose", "explain")
          for key in ("natural", "adversarially_trained")}
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_main_job_tiny_end_to_end(device, mnist_small, shared_cache, tmp_path, monkeypatch):
    from interpretgan.cli import main

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    root = tmp_path / "main"
    assert main(tiny_cli(root, device)) == 0
    assert read_json(root / "config.json")["run"] == json.loads(json.dumps(dataclasses.asdict(tiny())))
    stages = {p.name: read_json(p) for p in (root / "stages").iterdir()}
    assert set(stages) == STAGES and all(r["done"] for r in stages.values())  # every stage ran
    res = read_json(root / "results.json")
    assert res["layers"] == ["feature_extractor.pool2", "classifier.fc3"]
    for key in ("natural", "adversarially_trained"):
        r = res[key]
        assert {"clean_accuracy", "adversarial_accuracy", "per_layer", "maxpool_index_change",
                "misclassification"} <= set(r)
        accs = [r["per_layer"][n]["acc"] for n in res["layers"]]
        vul = [r["per_layer"][n]["vul"] for n in res["layers"]]
        assert vul[0] == pytest.approx(1 - accs[0]) and vul[1] == pytest.approx(accs[0] - accs[1])
        assert set(r["maxpool_index_change"]) == {"feature_extractor.pool1", "feature_extractor.pool2"}
        assert torch.tensor(r["misclassification"]).sum() == 40
        assert "agreement_natural" in r["per_layer"]["classifier.fc3"]
        for n in res["layers"]:  # intervals contain their point estimates; both controls present
            p = r["per_layer"][n]
            for k in ("acc", "vul", "acc_natural", "agreement_natural", "keeps_adversarial_label",
                      "acc_judge"):
                assert p[k] is not None, (key, n, k)
                lo, hi = p[k + "_ci"]
                assert lo <= p[k] <= hi, (key, n, k)
            assert p["large_vul"] == (p["vul_ci"][0] >= 0.4 * sum(vul) / len(vul) and p["vul_ci"][0] > 0)
        g = r["generators"]  # fit/summary.json: agreement + KID per layer
        assert set(g["layers"]) == set(res["layers"]) and all("kid" in v for v in g["layers"].values())
        assert g["heldout_outside_dstar"] is True and g["n_eval"] == TINY_FIT["eval_images"]
    b = res["budget"]  # cost in natural epochs measured in this run
    assert b["natural_epoch_s"] > 0 and b["epoch_units"] == pytest.approx(b["stages_s"] / b["natural_epoch_s"])
    assert set(b["per_stage_units"]) == set(res["timings_s"])
    saved = json.loads((root / "results.json").read_text())
    assert saved["layers"] == res["layers"]
    html = (root / "report" / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 7 and "Vul<sub>i</sub>" in html
    assert "agreement (%) / KID" in html and "natural training epochs" in html
    assert "judge's Acc<sub>i</sub>" in html and "keeps adversarial label" in html
    assert "How to read the rows together" in html
    # a rerun skips every stage, also on another device (the device is no stage's input)
    before = {p.name: p.stat().st_mtime_ns for p in (root / "stages").iterdir()}
    run_main(tiny(), root, progress=False, device="cpu")
    after = {p.name: p.stat().st_mtime_ns for p in (root / "stages").iterdir()}
    assert before == after
    # a changed input (the attack) redoes D* and what depends on it, not training or fitting
    run_main(dataclasses.replace(tiny(), attack="fgsm"), root, progress=False, device=device)
    changed = {k for k, v in {p.name: p.stat().st_mtime_ns for p in (root / "stages").iterdir()}.items()
               if v != before[k]}
    assert changed == {"dstar__natural.json", "dstar__adversarially_trained.json",
                       "diagnose__natural.json", "diagnose__adversarially_trained.json",
                       "explain__natural.json", "explain__adversarially_trained.json"}
    assert read_json(root / "natural" / "diagnosis.json")["attack"] == "fgsm"
    # the report is a pure function of the saved artifacts: rebuilt without running a stage
    first = read_json(root / "results.json")
    stamps = {p.name: p.stat().st_mtime_ns for p in (root / "stages").iterdir()}
    shutil.rmtree(root / "report")
    (root / "results.json").unlink()
    assert main(["report", "run", "--dir", str(root)]) == 0
    again = read_json(root / "results.json")
    assert again["natural"]["per_layer"] == first["natural"]["per_layer"]
    assert again["timings_s"] == first["timings_s"]
    assert (root / "report" / "index.html").stat().st_size > 10_000
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (root / "stages").iterdir()}


USER_MODEL = '''
import torch.nn as nn

class Net(nn.Module):
    """Not a zoo model: a custom forward over a nested Sequential."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(),
                                  nn.Sequential(nn.Conv2d(8, 8, 3, stride=2), nn.ReLU()))
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8 * 3 * 3, 10)

    def forward(self, x):
        return self.head(self.pool(self.body(x)).flatten(1))


def build():
    return Net()
'''


def test_main_job_on_a_user_model_file(mnist_small, shared_cache, tmp_path, monkeypatch):
    from interpretgan.pipeline import load_model_file

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    src = tmp_path / "my_model.py"
    src.write_text(USER_MODEL)
    net = load_model_file(f"{src}:build")
    torch.save(net.state_dict(), tmp_path / "my.pt")
    # control (a) for a user's model: an independent classifier's checkpoint (a zoo SmallCNN
    # for the 28-px input the model is probed at) judges the explanations
    from interpretgan import models
    torch.manual_seed(1)
    judge = tmp_path / "judge.pt"
    torch.save({"model": "smallcnn", "model_kwargs": {"input_size": 28},
                "state_dict": models.create("smallcnn", input_size=28).state_dict()}, judge)
    cfg = RunConfig(**{**tiny().__dict__, "layers": ("body.2.1", "head"), "judge": str(judge),
                       "fit_overrides": {**TINY_FIT, "generator_seeds": (0, 1)}})
    res = run_main(cfg, tmp_path / "run", model_file=f"{src}:build", checkpoint=str(tmp_path / "my.pt"),
                   progress=False)
    assert set(res) >= {"user", "layers"} and "natural" not in res
    assert res["layers"] == ["body.2.1", "head"]
    # two generator seeds per layer: each seed's Acc_i, their mean as Acc_i, one grid per layer
    for n in res["layers"]:
        row = res["user"]["per_layer"][n]
        assert len(row["acc_seeds"]) == 2 and row["acc"] == pytest.approx(sum(row["acc_seeds"]) / 2)
        assert row["acc_ci"][0] <= row["acc"] <= row["acc_ci"][1]
        assert row["acc_judge_ci"][0] <= row["acc_judge"] <= row["acc_judge_ci"][1]
    assert res["user"]["per_layer"]["head"]["acc_judge"] is not None
    assert "per generator seed" in (tmp_path / "run" / "report" / "index.html").read_text()
    assert read_json(tmp_path / "run" / "user" / "explain" / "explain.json")["layers"] == ["body.2.1", "head"]
    assert set(res["user"]["maxpool_index_change"]) == {"pool"}
    with pytest.raises(ValueError, match="FILE.py:FUNCTION"):
        load_model_file(str(src))


def test_kill_during_fitting_then_rerun_loses_at_most_one_checkpoint_interval(
        mnist_small, shared_cache, tmp_path, monkeypatch, caplog):
    """A crash in the middle of the fit stage; the rerun keeps the classifiers and D* and
    continues the generators from their last checkpoint (every 2 steps here)."""
    import logging

    from interpretgan.interpret import fit as fitting

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    cfg = dataclasses.replace(tiny(), fit_overrides={**TINY_FIT, "steps_per_scale": (2, 2, 2, 4),
                                                     "ckpt_every": 2})
    real_step, calls = fitting.gan_step, {"n": 0}

    def dying_step(*a, **k):  # one call per step for all layers: the 7th is step index 6
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_step(*a, **k)

    monkeypatch.setattr(fitting, "gan_step", dying_step)
    root = tmp_path / "main"
    with pytest.raises(KeyboardInterrupt):
        run_main(cfg, root, progress=False)
    stage = read_json(root / "stages" / "fit__natural.json")
    assert stage["done"] is False
    saved = torch.load(root / "natural" / "fit" / "classifier.fc3" / "last.pt", weights_only=True)
    assert saved["step"] == 6  # steps 0–5 done and saved; step 6 was in flight
    stamps = {p.name: p.stat().st_mtime_ns for p in (root / "stages").iterdir()}
    calls["n"] = -10 ** 9  # no more crashes
    with caplog.at_level(logging.INFO):
        res = run_main(cfg, root, progress=False)
    assert "resuming generator fitting at step 6 of 10" in caplog.text
    assert calls["n"] == -10 ** 9 + 4 + 10  # natural: the 4 steps left; adversarial: all 10
    for name in ("train__natural.json", "train__adversarially_trained.json", "dstar__natural.json"):
        assert (root / "stages" / name).stat().st_mtime_ns == stamps[name]  # not redone
    assert read_json(root / "stages" / "fit__natural.json")["done"] is True
    assert "natural" in res and "adversarially_trained" in res


def test_quick_preset_checkpoints_within_one_epoch_of_its_training_subset():
    from interpretgan.config import FIT_PRESETS

    for name in FIT_PRESETS.names():
        cfg = FIT_PRESETS.get(name)
        per_epoch = (cfg.train_subset or 60000) // cfg.batch_size
        assert cfg.ckpt_every <= per_epoch, name
