"""Token layers (B, N, D) read as token grids: a square grid of patch tokens goes through C's
Table 4/5 stages as a (D, h, w) map, the prefix tokens (CLS, registers) join at the FC."""
from __future__ import annotations

import logging

import pytest
import torch

from interpretgan.cli import main
from interpretgan.config import ConfigError, FitConfig, validate
from interpretgan.fitting import GanBank
from interpretgan.gan import Compressor, TokenLayoutError, read_layer
from interpretgan.runs import read_json
from test_own_model import _one_error, _rgb_model, write_folder
from test_pipeline import tiny_cli


def test_token_grids_are_found_after_their_prefix_tokens():
    cls = read_layer((65, 16))  # CLS + 8×8 patches (a 32-px ViT with patch 4)
    assert (cls.kind, cls.grid, cls.prefix, cls.map_shape) == ("grid", (8, 8), 1, (16, 8, 8))
    bare = read_layer((64, 16))  # no prefix token
    assert (bare.kind, bare.grid, bare.prefix) == ("grid", (8, 8), 0)
    assert read_layer((50, 16)).grid == (7, 7)  # ViT-B/32 at 224 px: CLS + 7×7
    assert read_layer((197, 768)).describe() == "token grid 14×14 + 1 prefix token (197 × 768)"
    assert read_layer((69, 16)).prefix == 5  # CLS + 4 registers + 8×8
    assert read_layer((77, 16), "grid:13").grid == (8, 8)
    assert read_layer((65, 16), "flat").kind == "flat"
    assert read_layer((32, 30, 30), "flat").kind == "map" and read_layer((10,)).kind == "vector"


def test_a_token_layout_without_a_grid_is_refused_naming_the_settings():
    with pytest.raises(TokenLayoutError) as e:  # 77 − k is no square for k = 0 … 8
        read_layer((77, 16))
    msg = str(e.value)
    assert "\n" not in msg and "(77, 16)" in msg and "fit.tokens=flat" in msg and "fit.tokens=grid:K" in msg
    with pytest.raises(TokenLayoutError, match="fit.tokens=grid:2 leaves 63 tokens"):
        read_layer((65, 16), "grid:2")
    with pytest.raises(ConfigError, match="fit.tokens must be auto, flat or grid:K"):
        validate(FitConfig(tokens="grid:x"), "fit.")


def test_a_vit_b16_like_token_layer_gets_a_small_compressor():
    """(197, D): CLS + 14×14 patches, with a small D standing in for ViT-B/16's 768."""
    d, code = 24, 16
    c = Compressor((197, d), code, width_mult=0.5)
    assert c.plan == [24, 48]  # Table 4/5 on (24, 14, 14): 2·24, 4·24 wide, halved
    convs = (d * 24 * 9 + 24) + (24 * 48 * 9 + 48)
    fc = (48 * 3 * 3 + 1 * d) * code + code  # the pooled 3×3 map and the CLS token
    assert sum(p.numel() for p in c.parameters()) == convs + fc
    flat = Compressor((197, d), code, width_mult=0.5, tokens="flat")
    assert sum(p.numel() for p in flat.parameters()) == 197 * d * code + code
    l = torch.randn(3, 197, d)
    out = c(l)
    assert out.shape == (3, code)
    moved = l.clone()
    moved[:, 0] += 1  # the CLS token alone reaches the code through the FC
    assert not torch.allclose(c(moved), out)


def test_a_bank_stacks_token_and_conv_members_like_separate_ones():
    cfg = FitConfig(code_dim=8, g_channels=(8, 8), d_channels=(8, 8), steps_per_scale=(1, 1))
    members = [("blocks.0", (17, 8)), ("conv", (4, 15, 15))]
    bank = GanBank.build(members, 3, cfg).eval()
    assert bank.Cs[0].reading.grid == (4, 4) and bank.Cs[1].reading.kind == "map"
    feats = [torch.randn(2, 17, 8), torch.randn(2, 4, 15, 15)]
    one = GanBank.build(members[:1], 3, cfg).eval()
    torch.testing.assert_close(bank.explain_all(feats)[0], one.explain(feats[0]))


TINY_VIT = '''
import torch
import torch.nn as nn


class Embed(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, 8, stride=8)  # 32 px → 4×4 patches
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x):
        t = self.proj(x).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(len(t), -1, -1), t], 1)  # (B, 17, dim)


class Block(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 16), nn.GELU(), nn.Linear(16, dim))

    def forward(self, x):
        return x + self.mlp(self.norm(x))


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = Embed()
        self.blocks = nn.Sequential(Block())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.blocks(self.embed(x))[:, 0])


class Odd(ViT):
    """77 tokens: no square grid after 0 … 8 prefix tokens."""

    def __init__(self):
        super().__init__()
        self.odd = nn.Linear(3 * 32 * 32, 77 * 8)

    def forward(self, x):
        return self.head(self.blocks(self.odd(x.flatten(1)).view(-1, 77, 8))[:, 0])


def build():
    return ViT()


def build_odd():
    return Odd()
'''


def test_a_tiny_vit_is_explained_through_token_grids(tmp_path, shared_cache, monkeypatch, caplog):
    from interpretgan.fitting import load_generators

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    data = write_folder(tmp_path / "pets")
    src = _rgb_model(tmp_path, TINY_VIT)
    ns: dict = {}
    exec(compile(TINY_VIT, str(src), "exec"), ns)
    torch.save(ns["build_odd"]().state_dict(), tmp_path / "odd.pt")
    root = tmp_path / "run"
    common = [*tiny_cli(root, "cpu"), "--dataset", "folder", "--data-dir", str(data), "--image-size", "32",
              "--model-file", f"{src}:build", "--checkpoint", str(tmp_path / "rgb.pt")]
    # bad input first: a token count without a grid, and a prefix count the layout does not fit
    with caplog.at_level(logging.ERROR):
        _one_error(caplog, main([*common[:-4], "--model-file", f"{src}:build_odd", "--checkpoint",
                                 str(tmp_path / "odd.pt"), "--layers", "blocks.0,head"]),
                   "'blocks.0'", "(77, 8)", "fit.tokens=flat", "fit.tokens=grid:K")
    assert not root.exists()
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        _one_error(caplog, main([*common, "--layers", "blocks.0,head", "--set", "fit.tokens=grid:2"]),
                   "'blocks.0'", "fit.tokens=grid:2")
    assert not root.exists()

    assert main([*common, "--layers", "embed,blocks.0,head"]) == 0
    res = read_json(root / "results.json")
    per = res["user"]["per_layer"]
    grid = {"shape": [17, 8], "read_as": "grid", "grid": [4, 4], "prefix_tokens": 1}
    assert per["embed"]["layer_reading"] == grid and per["blocks.0"]["layer_reading"] == grid
    assert per["head"]["layer_reading"] == {"shape": [3], "read_as": "vector", "grid": None, "prefix_tokens": 0}
    gans = load_generators(root / "user" / "fit", image_channels=3)
    assert gans["blocks.0"].Cs[0].reading.grid == (4, 4)
    assert gans["blocks.0"].explain(torch.randn(2, 17, 8)).shape == (2, 3, 32, 32)
    assert "token grid 4×4 + 1 prefix token (17 × 8)" in (root / "report" / "index.html").read_text()


def test_layers_shows_how_each_layer_of_a_model_file_is_read(tmp_path, capsys):
    src = tmp_path / "vit.py"
    src.write_text(TINY_VIT)
    assert main(["layers", "--model-file", f"{src}:build"]) == 0
    lines = {ln.lstrip("* ").split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.strip()}
    assert "(17, 8)" in lines["embed"] and "token grid 4×4 + 1 prefix token" in lines["embed"]
    assert "conv map" in lines["embed.proj"] and "vector" in lines["head"]
    assert main(["layers", "--model-file", f"{src}:build", "--tokens", "flat"]) == 0
    assert "flat" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["layers", "--model-file", f"{src}:build", "--tokens", "grid"])
    assert e.value.code == 2
