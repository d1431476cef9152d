"""Shipped encoder-ablation results: save -> load round trip, keyed by everything the numbers depend on.
(Training and evaluating the variants is tested end to end in test_pipeline.py.)"""
import json

import numpy as np
import pytest
import torch

from hqanogan_core import ablation
from hqanogan_core.ablation import (ABLATION_FORMAT, RESULTS_FILE, ablation_key, encoder_ablation, load_ablation,
                                    results_to_json, save_ablation, tensor_digest)

VARIANTS = {"W+ (all losses)": {"blocks": (1, 1, 1, 1)}, "single w": {"encoder": "single"}}


def _results(offset: float = 0.0) -> dict:
    """What run_encoder_ablation returns (the encoder object is dropped when saving)."""
    out = {}
    for i, name in enumerate(VARIANTS):
        out[name] = {"reconstruction": {"l1": (0.05 + i, 0.01), "psnr": (24.4 - i, 0.3), "ssim": (0.8, 0.02),
                                        "perceptual": (0.1, 0.01)},
                     "auroc": {"image_residual": 0.6 + offset, "hqanogan": 0.7 + i / 10},
                     "scores": np.linspace(-1, 1, 5) + i, "train_seconds": 12.5 + i,
                     "log": [{"step": 1, "loss": 0.5, "s_per_step": 0.1}],
                     "config": {"steps": 2, "blocks": (1, 1, 1, 1)},
                     "encoder": torch.nn.Linear(2, 2)}
    return out


@pytest.fixture
def setting(tmp_path):
    torch.manual_seed(0)
    G = torch.nn.Linear(3, 2)
    data = tmp_path / "data"
    data.mkdir()
    (data / "fingerprint.txt").write_text("phantom-v1 abc123\n")
    key = ablation_key(G, data, steps=2, batch=4, variants=VARIANTS, eval_split="valid", n_fit=20, seed=0,
                       perceptual="stlpips-alex")
    return G, data, key


def test_key_names_what_the_numbers_depend_on(setting):
    G, data, key = setting
    assert key["data_fingerprint"] == "phantom-v1 abc123" and key["generator_sha256"] == tensor_digest(G)
    assert {k: key[k] for k in ("steps", "batch", "eval_split", "n_fit", "seed", "perceptual")} == \
        {"steps": 2, "batch": 4, "eval_split": "valid", "n_fit": 20, "seed": 0, "perceptual": "stlpips-alex"}
    # the digest follows the weights
    H = torch.nn.Linear(3, 2)
    H.load_state_dict(G.state_dict())
    assert tensor_digest(H) == tensor_digest(G)
    with torch.no_grad():
        H.weight[0, 0] += 1e-3
    assert tensor_digest(H) != tensor_digest(G)


def test_save_load_round_trip(setting, tmp_path):
    _, _, key = setting
    results = _results()
    file = save_ablation(tmp_path / "shipped", results, key, command="python -m hqanogan_core ablate-encoder ...")
    assert file == tmp_path / "shipped" / RESULTS_FILE
    doc = json.loads(file.read_text())
    assert doc["format"] == ABLATION_FORMAT and doc["command"].endswith("ablate-encoder ...")
    assert "revision" in doc["code"]
    messages = []
    loaded = load_ablation(tmp_path / "shipped", key, log=messages.append)
    # the variants hold a tuple, stored as a JSON list: the key still matches
    assert loaded == json.loads(json.dumps(results_to_json(results)))
    assert "encoder" not in loaded["single w"] and loaded["single w"]["scores"] == list(np.linspace(-1, 1, 5) + 1)
    assert loaded["W+ (all losses)"]["reconstruction"]["psnr"] == [24.4, 0.3]
    assert len(messages) == 1 and "loaded" in messages[0] and "ablate-encoder" in messages[0]


@pytest.mark.parametrize("field,value", [("steps", 3), ("batch", 8), ("seed", 1), ("n_fit", 21),
                                         ("eval_split", "test"), ("perceptual", "lpips-alex"),
                                         ("data_fingerprint", "phantom-v1 other"), ("generator_sha256", "0" * 64),
                                         ("variants", {"W+ (all losses)": {"blocks": (1, 1, 1, 2)}})])
def test_a_key_differing_in_one_field_is_not_loaded(setting, tmp_path, field, value):
    _, _, key = setting
    save_ablation(tmp_path, _results(), key)
    messages = []
    assert load_ablation(tmp_path, {**key, field: value}, log=messages.append) is None
    assert len(messages) == 1 and f"({field} differ)" in messages[0] and "recomputing" in messages[0]
    # a field the stored key lacks (or has extra) also counts
    messages.clear()
    assert load_ablation(tmp_path, {**key, "new_field": 1}, log=messages.append) is None
    assert "(new_field differ)" in messages[0]


def test_missing_or_foreign_file_is_not_loaded(setting, tmp_path):
    _, _, key = setting
    messages = []
    assert load_ablation(tmp_path / "nowhere", key, log=messages.append) is None and messages == []
    (tmp_path / RESULTS_FILE).write_text(json.dumps({"format": "something-else", "key": key}))
    assert load_ablation(tmp_path, key, log=messages.append) is None
    assert "has format 'something-else'" in messages[0]


class StubPerceptual:
    backend_name = "stlpips-alex"


def test_encoder_ablation_loads_matching_results_and_recomputes_otherwise(setting, tmp_path, monkeypatch):
    G, data, key = setting
    shipped = tmp_path / "shipped"
    save_ablation(shipped, _results(), key)
    calls = []

    def fake_run(G, D, data, out_root, **kw):
        calls.append((out_root, kw))
        return _results(offset=0.1)

    monkeypatch.setattr(ablation, "run_encoder_ablation", fake_run)
    kw = dict(steps=2, batch=4, variants=VARIANTS, n_fit=20, seed=0, percep=StubPerceptual(), log=lambda *a: None)
    got = encoder_ablation(G, None, data, shipped=shipped, out_root=tmp_path / "work", **kw)
    assert calls == [] and got["W+ (all losses)"]["auroc"]["image_residual"] == 0.6     # the shipped numbers
    # other settings: computed (here: the stub), then kept in out_root, where the next call finds them
    got = encoder_ablation(G, None, data, shipped=shipped, out_root=tmp_path / "work", **{**kw, "steps": 3})
    assert len(calls) == 1 and calls[0][1]["steps"] == 3 and got["W+ (all losses)"]["auroc"]["image_residual"] == 0.7
    again = encoder_ablation(G, None, data, shipped=shipped, out_root=tmp_path / "work", **{**kw, "steps": 3})
    assert len(calls) == 1 and again == json.loads(json.dumps(got))
