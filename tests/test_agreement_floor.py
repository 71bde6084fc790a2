"""The fit's agreement floor (``fit.min_agreement``): members below it after the scheduled steps
fit on at the last scale up to the cap, members at it stop, decisions survive kills, and a
floor of 0 leaves the fit as it was."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from interpretgan.fitting import (GanBank, agreement, extra_step_cap, fit_generators, floor_records,
                                  floor_summary, layer_dirname, load_generators)
from interpretgan.runs import load_checkpoint, read_jsonl
from test_gan import LAYERS, TINY, toy  # noqa: F401 (toy: the trained toy classifier fixture)

OFF = dataclasses.replace(TINY, steps_per_scale=(2, 2, 2, 6), ckpt_every=4)  # 12 steps, floor 0
FLOOR = dataclasses.replace(OFF, min_agreement=1.0)  # out of reach: every member fits to the cap


def _same_weights(a: GanBank, b: GanBank, msg: str = "") -> None:
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=f"{msg} {k}")


def _last(root, n: str) -> dict:
    return load_checkpoint(root / layer_dirname(n) / "last.pt")


@pytest.fixture(scope="module")
def off_fit(toy, tmp_path_factory):  # noqa: F811
    """The fit with the floor off: (folder, generators)."""
    f, ds, ex = toy
    root = tmp_path_factory.mktemp("off")
    return root, fit_generators(f, ds, ex, OFF, root, LAYERS, progress=False)


def test_a_member_below_the_floor_fits_on_up_to_the_cap_and_is_marked_unreliable(toy, tmp_path):  # noqa: F811
    f, ds, ex = toy
    fit_generators(f, ds, ex, FLOOR, tmp_path, LAYERS, progress=False)
    cap = extra_step_cap(FLOOR)
    assert cap == 6  # half the 12 scheduled steps
    records = floor_records(tmp_path)
    for n in LAYERS:
        assert _last(tmp_path, n)["step"] == 12 + cap
        assert records[n]["extra_steps"] == cap and not records[n]["active"] and records[n]["agreement"] < 1
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if r["step"] > 12] == [14, 16, 18]  # rounds of a quarter of the cap
    assert rows[-1]["scale"] == 3 and rows[-1]["alpha"] == 1.0  # the last scale at full weight
    agree = agreement(f, load_generators(tmp_path), ex, 32)
    assert {n: records[n]["agreement"] for n in LAYERS} == agree  # judged on the fit's held-out images
    summary = {"layers": {n: {"agreement": a} for n, a in agree.items()}}
    out = floor_summary(summary, FLOOR, records)
    assert out == {"agreement_floor": 1.0, "max_extra_steps": 6, "reliable": {n: False for n in LAYERS}}
    row = summary["layers"][LAYERS[0]]
    assert row["reliable"] is False and row["extra_steps"] == 6 and 0 <= row["agreement_scheduled"] < 1


def test_a_floor_of_zero_leaves_the_fit_as_it_was(toy, off_fit, tmp_path):  # noqa: F811
    """Floor 0: no judging, no extra step, no floor record; the generators are bit for bit
    those of the first 12 steps of a fit that goes on past them."""
    f, ds, ex = toy
    root, off = off_fit
    cut = fit_generators(f, ds, ex, FLOOR, tmp_path, LAYERS, progress=False, stop_after=12)
    for n in LAYERS:
        last = _last(root, n)
        assert last["step"] == 12 and "floor" not in last
        for (k, a), b in zip(off[n].state_dict().items(), cut[n].state_dict().values()):
            assert torch.equal(a, b), f"{n} {k}"


@pytest.fixture
def judged(monkeypatch):
    """The floor's judge rigged: pool2's generators pass it, fc3's never do."""
    from interpretgan.interpret import fit as fitting

    real = fitting.agreement

    def rigged(classifier, gans, x, *a, **kw):
        return {n: (1.0 if n.startswith(LAYERS[0]) else v) for n, v in real(classifier, gans, x, *a, **kw).items()}
    monkeypatch.setattr(fitting, "agreement", rigged)
    return dataclasses.replace(OFF, min_agreement=0.99)


@pytest.fixture
def judged_fit(toy, tmp_path, judged):  # noqa: F811
    f, ds, ex = toy
    return fit_generators(f, ds, ex, judged, tmp_path / "a", LAYERS, progress=False)


def test_a_member_at_the_floor_stops_while_one_below_fits_on(judged_fit, off_fit, tmp_path):
    first, second = (_last(tmp_path / "a", n) for n in LAYERS)
    assert first["step"] == second["step"] == 18  # every member saved at the common step
    assert first["floor"]["extra_steps"] == 0 and first["floor"]["measured_at"] == 12
    assert second["floor"]["extra_steps"] == 6 and second["floor"]["measured_at"] == 18
    off = off_fit[1]
    _same_weights(judged_fit[LAYERS[0]], off[LAYERS[0]], "frozen member")  # never stepped after 12
    assert not torch.allclose(next(judged_fit[LAYERS[1]].G.parameters()), next(off[LAYERS[1]].G.parameters()))


@pytest.mark.parametrize("kill_at", [13, 14], ids=["mid-round", "round-end"])
def test_a_kill_during_the_extra_rounds_resumes_exactly(toy, tmp_path, judged, judged_fit, kill_at):  # noqa: F811
    f, ds, ex = toy
    fit_generators(f, ds, ex, judged, tmp_path / "b", LAYERS, progress=False, stop_after=kill_at)
    assert _last(tmp_path / "b", LAYERS[1])["step"] == kill_at
    assert _last(tmp_path / "b", LAYERS[0])["floor"]["active"] is False  # already stopped at 12
    resumed = fit_generators(f, ds, ex, judged, tmp_path / "b", LAYERS, progress=False)
    for n in LAYERS:
        _same_weights(judged_fit[n], resumed[n], n)
        assert _last(tmp_path / "a", n)["floor"] == _last(tmp_path / "b", n)["floor"]
