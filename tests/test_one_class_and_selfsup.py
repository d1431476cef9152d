"""Deep SVDD / Deep SAD (bias-free net, centre, loss by hand, the centre's one moment, resume) and the
self-supervised CutPaste / AnatPaste trainers (cosine schedule, augmented batches, ResNet-18, resume),
and the labelled anomalies Deep SAD may see."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from hqanogan_core.data.splits import SplitArrays, labelled_anomalies
from hqanogan_core.nets import deep_svdd as svdd_nets
from hqanogan_core.nets.resnet import ResNet18, ResNetConfig
from hqanogan_core.train.baselines import CHECKPOINT_NAME, RECIPES, baseline_config
from hqanogan_core.train.one_class import DeepSADTrainer
from hqanogan_core.train.self_supervised import augmented_batch, cosine_lr


def _images(n=12, r=16, c=1, seed=0) -> torch.Tensor:
    return torch.rand(n, c, r, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


LABELLED = _images(n=3, seed=9)


# ----------------------------------------------------------------------------- Deep SVDD's network


@pytest.mark.parametrize("r,stages", [(16, 2), (32, 3), (64, 4)])
def test_deep_svdd_encoder_is_bias_free(r, stages):
    cfg = svdd_nets.DeepSVDDNetConfig(resolution=r, width=2, stages=stages, rep_dim=8)
    phi = svdd_nets.DeepSVDDEncoder(cfg)
    names = [n for n, _ in phi.named_parameters()]
    assert names and not [n for n in names if "bias" in n], names
    convs_and_linears = [m for m in phi.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(convs_and_linears) == stages + 1 and all(m.bias is None for m in convs_and_linears)
    bns = [m for m in phi.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == stages and all(not m.affine and m.weight is None and m.bias is None for m in bns)
    # consequence: with nothing learned yet (running mean 0) the zero image maps to exactly 0
    assert torch.equal(phi.eval()(torch.zeros(2, 1, r, r)), torch.zeros(2, 8))
    # the decoder (pretraining only) is bias-free too, and the centre is a buffer, not a parameter
    dec = svdd_nets.DeepSVDDDecoder(cfg)
    assert not [n for n, _ in dec.named_parameters() if "bias" in n]
    assert "centre" in dict(phi.named_buffers()) and "centre" not in names
    assert dec(phi(_images(n=2, r=r))).shape == (2, 1, r, r)


def test_svdd_centre_moves_small_entries_to_plus_minus_eps():
    #               mean:  0.05   -0.05   0.0   0.5   -0.3   0.1 (= eps: kept)  -0.1 (kept)
    features = torch.tensor([[0.0, -0.1, 0.2, 0.4, -0.3, 0.1, -0.2],
                             [0.1, 0.0, -0.2, 0.6, -0.3, 0.1, 0.0]])
    c = svdd_nets.svdd_centre(features, eps=0.1)
    torch.testing.assert_close(c, torch.tensor([0.1, -0.1, 0.1, 0.5, -0.3, 0.1, -0.1]))
    assert (c.abs() >= 0.1 - 1e-7).all()
    # another eps: only 0.05 and -0.05 and 0 are below 0.06
    torch.testing.assert_close(svdd_nets.svdd_centre(features, eps=0.06),
                               torch.tensor([0.06, -0.06, 0.06, 0.5, -0.3, 0.1, -0.1]))


def test_deep_sad_loss_by_hand():
    loss = svdd_nets.deep_sad_loss
    d_u = torch.tensor([1.0, 2.0, 3.0])
    # unlabelled only: Deep SVDD's mean distance
    assert loss(d_u).item() == pytest.approx(2.0)
    assert loss(d_u, torch.zeros(0), torch.zeros(0)).item() == pytest.approx(2.0)
    # labelled anomalies (y = -1): + eta * mean(1 / (d + eps)) = 2 + 2 * (1 / 0.5 + 1 / 4) / 2 = 4.25
    d_l, anomalies = torch.tensor([0.5, 4.0]), -torch.ones(2)
    assert loss(d_u, d_l, anomalies, eta=2.0).item() == pytest.approx(4.25, rel=1e-5)
    eps = 1e-3
    expected = 2 + 0.5 * (1 / (0.5 + eps) + 1 / (4 + eps)) / 2
    assert loss(d_u, d_l, anomalies, eta=0.5, eps=eps).item() == pytest.approx(expected, rel=1e-6)
    # labelled normals (y = +1): + eta * mean(d + eps)
    assert loss(d_u, d_l, torch.ones(2), eta=1.0, eps=eps).item() == pytest.approx(2 + 2.25 + eps, rel=1e-6)
    # an anomaly lowers the loss by moving away from c
    d = torch.tensor([1.0], requires_grad=True)
    loss(d_u, d, -torch.ones(1)).backward()
    assert d.grad.item() < 0


# ----------------------------------------------------------------------------- Deep SVDD / Deep SAD trainers


def _svdd_cfg(method, **kw):
    return baseline_config(method, **{"resolution": 16, "width": 2, "stages": 2, "rep_dim": 8, "batch": 4,
                                      "pretrain_steps": 2, "steps": 5, **kw})


def _trainer(method, cfg, images):
    if method == "deepsad":
        return RECIPES[method][1](cfg, images, LABELLED)
    return RECIPES[method][1](cfg, images)


def test_deep_sad_requires_labelled_images():
    cfg, images = _svdd_cfg("deepsad"), _images()
    with pytest.raises(ValueError, match="labelled anomalies"):
        DeepSADTrainer(cfg, images)
    with pytest.raises(ValueError, match="labelled anomalies"):
        RECIPES["deepsad"][1](cfg, images, images[:0])
    with pytest.raises(AssertionError, match="labelled images must be"):
        DeepSADTrainer(cfg, images, _images(n=2, r=32))
    with pytest.raises(ValueError, match=r"pretrain_steps \(5\) < steps \(5\)"):
        RECIPES["deepsvdd"][1](_svdd_cfg("deepsvdd", pretrain_steps=5), images)


@pytest.mark.parametrize("method", ["deepsvdd", "deepsad"])
def test_centre_is_set_once_at_the_end_of_pretraining(method):
    images = _images()
    trainer = _trainer(method, _svdd_cfg(method), images)
    phi = trainer.nets["phi"]
    stats = [trainer.step() for _ in range(2)]                       # the autoencoder phase
    assert all("reconstruction" in s and "dist_normal" not in s for s in stats)
    assert torch.equal(phi.centre, torch.zeros(8))
    # what the centre must become: the mean of phi over all training normals, in eval mode, eps-adjusted
    with torch.no_grad():
        expected = svdd_nets.svdd_centre(phi.eval()(images), 0.1)
    phi.train()
    stats = trainer.step()                                           # step pretrain_steps: c, then one-class
    assert "dist_normal" in stats and "reconstruction" not in stats
    torch.testing.assert_close(phi.centre, expected, rtol=0, atol=1e-6)
    assert (phi.centre.abs() >= 0.1 - 1e-7).all() and phi.training
    centre = phi.centre.clone()
    weights = phi.fc.weight.detach().clone()
    for _ in range(2):
        trainer.step()
    assert torch.equal(phi.centre, centre)                           # never moves again ...
    assert not torch.equal(phi.fc.weight, weights)                   # ... while phi does
    if method == "deepsad":
        assert "dist_labelled" in stats


# ----------------------------------------------------------------------------- bit-exact resume

TINY = {"deepsvdd": {"width": 2, "stages": 2, "rep_dim": 8, "batch": 4, "pretrain_steps": 2},
        "deepsad": {"width": 2, "stages": 2, "rep_dim": 8, "batch": 4, "pretrain_steps": 2, "batch_labelled": 2},
        "cutpaste": {"width": 2, "batch": 3},
        "anatpaste": {"width": 2, "batch": 3}}
# (method, steps, resume after, resolution): Deep SVDD / SAD resumed inside the autoencoder phase (crossing the
# centre afterwards) and after the centre was set; the self-supervised ones at 32 px so AnatPaste finds lungs
RESUME_CASES = [("deepsvdd", 4, 1, 16), ("deepsvdd", 4, 3, 16), ("deepsad", 4, 1, 16), ("deepsad", 4, 3, 16),
                ("cutpaste", 4, 2, 32), ("anatpaste", 4, 2, 32)]


@pytest.mark.parametrize("method,steps,half,r", RESUME_CASES,
                         ids=[f"{m}-resume-at-{h}" for m, _, h, _ in RESUME_CASES])
def test_resume_is_bit_exact(method, steps, half, r, resume_is_bit_exact):
    cfg, images = baseline_config(method, resolution=r, steps=steps, **TINY[method]), _images(r=r)
    if method == "deepsad":
        labelled = _images(n=3, r=r, seed=9)
        make = lambda: RECIPES[method][1](cfg, images, labelled)       # noqa: E731
    else:
        make = lambda: RECIPES[method][1](cfg, images)                 # noqa: E731
    a, _ = resume_is_bit_exact(make, steps, half)
    if method in ("deepsvdd", "deepsad"):
        assert a["net.phi.centre"].abs().min() >= 0.1 - 1e-7          # the centre was set and saved


def test_deep_svdd_checkpoint_is_not_a_deep_sad_one(tmp_path):
    images = _images()
    path = _trainer("deepsvdd", _svdd_cfg("deepsvdd"), images).save(tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ValueError, match="is not a deepsad checkpoint"):
        _trainer("deepsad", _svdd_cfg("deepsad"), images).load(path)


# ----------------------------------------------------------------------------- CutPaste / AnatPaste pieces


def test_cosine_lr_endpoints_and_shape():
    assert cosine_lr(0.03, 0, 100) == 0.03
    assert cosine_lr(0.03, 50, 100) == pytest.approx(0.015)
    assert cosine_lr(0.03, 25, 100) == pytest.approx(0.03 * (1 + math.cos(math.pi / 4)) / 2)
    assert cosine_lr(0.03, 100, 100) == pytest.approx(0.0, abs=1e-18)
    assert cosine_lr(0.03, 150, 100) == cosine_lr(0.03, 100, 100)      # clamped past the end
    lrs = [cosine_lr(1.0, t, 10) for t in range(11)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("augmentations", [("cutpaste", "scar"), ("anatpaste",)])
def test_augmented_batch_shapes_and_labels(augmentations):
    x = _images(n=3, r=32, seed=2)
    images, labels = augmented_batch(x, augmentations, np.random.default_rng(0))
    k = 1 + len(augmentations)
    assert images.shape == (3 * k, 1, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.long and labels.tolist() == [c for c in range(k) for _ in range(3)]
    assert torch.equal(images[:3], x)                                         # class 0: the batch itself
    assert images.min() >= -1 and images.max() <= 1
    for c in range(1, k):                                                     # each copy is its own image, changed
        copies = images[3 * c:3 * (c + 1)]
        assert all(not torch.equal(copies[i], x[i]) for i in range(3)), augmentations[c - 1]
        changed = (copies - x).abs() > 1e-6
        assert (changed.flatten(1).float().mean(1) < 0.5).all()             # a local change, not a new image
    again, _ = augmented_batch(x, augmentations, np.random.default_rng(0))
    assert torch.equal(images, again)
    with pytest.raises(AssertionError, match=r"expected \[B, 1, R, R\]"):
        augmented_batch(x.repeat(1, 3, 1, 1), augmentations, np.random.default_rng(0))


def test_cutpaste_trainer_rejects_unknown_augmentations():
    with pytest.raises(ValueError, match=r"unknown augmentation\(s\) \['blur'\]"):
        RECIPES["cutpaste"][1](baseline_config("cutpaste", resolution=16, width=2, augmentations=("cutpaste", "blur")),
                               _images())
    trainer = RECIPES["anatpaste"][1](baseline_config("anatpaste", resolution=16, width=2), _images())
    assert trainer.arch()["n_classes"] == 2 and trainer.nets["net"].classifier.out_features == 2


@pytest.mark.parametrize("r", [64, 256])
def test_resnet18_shapes_and_gradients(r):
    torch.manual_seed(0)
    cfg = ResNetConfig(resolution=r, width=2, head_layers=1, n_classes=3)
    net = ResNet18(cfg)
    x = _images(n=2, r=r).requires_grad_(True)
    assert net.blocks(net.stem(x)).shape == (2, 16, r // 32, r // 32)
    logits, embedding = net(x)
    assert logits.shape == (2, 3) and embedding.shape == (2, 16)
    torch.testing.assert_close(net.embed(x), embedding)
    (logits ** 2).sum().backward()
    stem = net.stem[0].weight.grad
    assert stem is not None and torch.isfinite(stem).all() and stem.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing
    with pytest.raises(AssertionError, match=rf"expected \[N, 1, {r}, {r}\]"):
        net.embed(_images(n=2, r=r // 2))


# ----------------------------------------------------------------------------- labelled anomalies for Deep SAD


def _split() -> SplitArrays:
    # 10 normals and three anomaly types of 5, 3 and 4 images, interleaved
    types = np.array(["good", "a", "b", "good", "c", "a", "good", "b", "a", "c", "good", "good", "a", "c", "good",
                      "b", "good", "a", "c", "good", "good", "good"])
    labels = (types != "good").astype(np.int64)
    n = len(types)
    return SplitArrays(images=np.zeros((n, 2, 2), np.float32), labels=labels, types=types, masks=None,
                       paths=[f"img{i}.png" for i in range(n)])


@pytest.mark.parametrize("k,per_type", [(7, {"a": 3, "b": 2, "c": 2}), (3, {"a": 1, "b": 1, "c": 1}),
                                        (2, {"a": 1, "b": 1, "c": 0}), (1, {"a": 1, "b": 0, "c": 0})])
def test_labelled_anomalies_spread_over_types(k, per_type):
    split = _split()
    pick = labelled_anomalies(split, k, seed=0)
    assert len(pick) == k and list(pick) == sorted(set(pick.tolist()))
    assert (split.labels[pick] == 1).all()                                  # never a normal
    kinds, counts = np.unique(split.types[pick], return_counts=True)
    assert {str(t): int(c) for t, c in zip(kinds, counts) if c} == {t: c for t, c in per_type.items() if c}


def test_labelled_anomalies_are_seeded():
    split = _split()
    np.testing.assert_array_equal(labelled_anomalies(split, 5, seed=3), labelled_anomalies(split, 5, seed=3))
    assert len({tuple(labelled_anomalies(split, 5, seed=s)) for s in range(6)}) > 1
    assert labelled_anomalies(split, 0).shape == (0,)


def test_labelled_anomalies_can_take_every_abnormal():
    split = _split()
    n_abnormal = int(split.labels.sum())                                    # 12; type "b" has only 3 of them
    for k in (11, n_abnormal):
        pick = labelled_anomalies(split, k, seed=0)
        assert len(pick) == k, f"asked for {k} labelled anomalies, got {len(pick)}"
        assert (split.labels[pick] == 1).all()
    np.testing.assert_array_equal(labelled_anomalies(split, n_abnormal), np.flatnonzero(split.labels == 1))


def test_labelled_anomalies_errors():
    split = _split()
    with pytest.raises(ValueError, match="asked for 13 labelled anomalies; the split has 12"):
        labelled_anomalies(split, 13)
    with pytest.raises(ValueError, match="asked for -1"):
        labelled_anomalies(split, -1)
