"""The generative baselines: nets (shapes, gradients), losses by hand, configs, bit-exact resume of every
trainer, shipping (export + load + validation AUROC) and the train-baseline / export-baseline CLI."""
import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from hqanogan_core import checkpoint as ckpt
from hqanogan_core.cli import main
from hqanogan_core.data.phantom import PhantomConfig, write_phantom_dataset
from hqanogan_core.data.splits import load_split
from hqanogan_core.methods import METHODS
from hqanogan_core.methods.base import n_parameters
from hqanogan_core.methods.ganomaly import GANomaly
from hqanogan_core.methods.learned import SHIPPED_WEIGHTS, load_baseline_nets
from hqanogan_core.metrics import auroc
from hqanogan_core.nets import autoencoder as ae_nets
from hqanogan_core.nets import ganomaly as ganomaly_nets
from hqanogan_core.nets import wgan
from hqanogan_core.provenance import file_sha256
from hqanogan_core.provenance import portable_path
from hqanogan_core.ship import SHIPPED_BASELINE_FORMAT, export_baseline, read_baseline_manifest, validation_auroc
from hqanogan_core.train.baselines import CHECKPOINT_NAME, GPU_PRESETS, RECIPES, baseline_config, train_baseline

TRAINABLE = ["ae", "vae", "fanogan", "ganomaly"]
# tiny per-method settings at 16 px (fanogan: 1 GAN step, then encoder steps)
TINY = {"ae": {"width": 4}, "vae": {"width": 4}, "fanogan": {"width": 2, "gan_steps": 1, "batch": 4},
        "ganomaly": {"width": 4, "batch": 4}}


def _images(n=12, r=16, c=1, seed=0) -> torch.Tensor:
    return torch.rand(n, c, r, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----------------------------------------------------------------------------- nets: shapes and gradients


def _net_outputs(kind: str, r: int, width: int, x: torch.Tensor):
    """(output tensors to check, modules) of one net kind at resolution r."""
    if kind in ("ae", "vae"):
        cfg = ae_nets.AutoencoderConfig(resolution=r, width=width, latent=16)
        if kind == "ae":
            net = ae_nets.ConvAutoencoder(cfg)
            out = net(x)
            assert out.shape == x.shape and out.abs().max() <= 1
            return [out], [net]
        net = ae_nets.ConvVAE(cfg)
        x_hat, mu, logvar = net(x)
        assert x_hat.shape == x.shape and mu.shape == logvar.shape == (len(x), 16)
        return [x_hat, mu, logvar], [net]
    if kind.startswith("wgan"):
        cfg = wgan.WganConfig(resolution=r, width=width, z_dim=8)
        G, critic, E = wgan.Generator(cfg), wgan.Critic(cfg), wgan.Encoder(cfg)
        z = E(x)
        assert z.shape == (len(x), 8) and z.abs().max() < 1                     # tanh
        fake = G(z)
        assert fake.shape == x.shape and fake.abs().max() <= 1
        score, f = critic(fake, return_features=True)
        assert score.shape == (len(x),) and f.shape == (len(x), critic.trunk.dim)
        assert torch.equal(critic(fake), score)
        return [score, f], [G, critic, E]
    cfg = ganomaly_nets.GanomalyConfig(resolution=r, width=width, nz=8)
    G, D = ganomaly_nets.GanomalyGenerator(cfg), ganomaly_nets.GanomalyDiscriminator(cfg)
    x_hat, z, z_hat = G(x)
    assert x_hat.shape == x.shape and z.shape == z_hat.shape == (len(x), 8)
    logit, feat = D(x_hat)
    assert logit.shape == (len(x),) and feat.shape[0] == len(x) and feat.shape[2:] == (4, 4)
    return [z, z_hat, logit, feat], [G, D]


NET_CASES = [(kind, r, 4) for kind in ("ae", "vae", "wgan", "ganomaly") for r in (16, 64)] + \
            [(kind, 256, 2) for kind in ("ae", "vae", "wgan", "ganomaly")]


@pytest.mark.parametrize("kind,r,width", NET_CASES, ids=[f"{k}-{r}px-w{w}" for k, r, w in NET_CASES])
def test_net_shapes_and_gradients(kind, r, width):
    torch.manual_seed(0)
    x = _images(n=3, r=r).requires_grad_(True)
    outputs, modules = _net_outputs(kind, r, width, x)
    loss = sum((o.float() ** 2).mean() for o in outputs)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for m in modules:
        for name, p in m.named_parameters():
            assert p.grad is not None, f"{type(m).__name__}.{name} gets no gradient"
            assert torch.isfinite(p.grad).all(), name


def test_nets_reject_wrong_sizes():
    with pytest.raises(AssertionError, match="power of two"):
        ae_nets.ConvAutoencoder(ae_nets.AutoencoderConfig(resolution=48))
    with pytest.raises(AssertionError, match="power of two"):
        wgan.Generator(wgan.WganConfig(resolution=4))
    net = ganomaly_nets.GanomalyGenerator(ganomaly_nets.GanomalyConfig(resolution=16, width=2, nz=4))
    with pytest.raises(AssertionError, match=r"expected \[N, 1, 16, 16\]"):
        net(_images(n=2, r=32))


# ----------------------------------------------------------------------------- losses by hand


def test_vae_kl_by_hand():
    kl = ae_nets.kl_to_standard_normal
    # q = N(0, 1) is the prior: KL 0 in every dimension
    assert torch.equal(kl(torch.zeros(2, 5), torch.zeros(2, 5)), torch.zeros(2))
    # 1-D: KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1 - log s^2) / 2
    #   mu = 1, s^2 = 1: (1 + 1 - 1 - 0) / 2 = 0.5
    #   mu = 0, s^2 = 4: (0 + 4 - 1 - log 4) / 2 = (3 - 1.386294) / 2 = 0.806853
    assert kl(torch.tensor([[1.0]]), torch.tensor([[0.0]])).item() == pytest.approx(0.5)
    assert kl(torch.tensor([[0.0]]), torch.tensor([[math.log(4.0)]])).item() == pytest.approx(0.806853, abs=1e-6)
    # dimensions add: the two cases above as one 2-D latent
    both = kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4.0)]]))
    assert both.item() == pytest.approx(0.5 + 0.806853, abs=1e-6)
    # and agrees with torch.distributions on a random case
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(kl(mu, logvar), ref)


def test_gaussian_nll_by_hand():
    # x = [1, 2], x_hat = [0, 0], sigma = 0.5: (1^2 + 2^2) / (2 * 0.25) = 10; a perfect fit costs 0
    x = torch.tensor([[[[1.0, 2.0]]], [[[0.5, -0.5]]]])            # [2, 1, 1, 2]
    x_hat = torch.tensor([[[[0.0, 0.0]]], [[[0.5, -0.5]]]])
    torch.testing.assert_close(ae_nets.gaussian_nll(x, x_hat, 0.5), torch.tensor([10.0, 0.0]))
    # sigma = 1: (1 + 4) / (2 * 1) = 2.5 (the nll scales as 1 / sigma^2)
    assert ae_nets.gaussian_nll(x[:1], x_hat[:1], 1.0).item() == pytest.approx(2.5)


class LinearCritic(nn.Module):
    """critic(x) = <w, x>: its gradient with respect to x is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_wgan_gradient_penalty():
    g = torch.Generator().manual_seed(0)
    real, fake = _images(4, 8, seed=1), _images(4, 8, seed=2)
    w = torch.randn(64, generator=g)
    # unit-norm gradient everywhere: penalty (||w|| - 1)^2 = 0
    gp = wgan.gradient_penalty(LinearCritic(w / w.norm()), real, fake, generator=torch.Generator().manual_seed(3))
    assert gp.item() == pytest.approx(0.0, abs=1e-10)
    # ||w|| = 3: (3 - 1)^2 = 4 at every interpolate
    gp3 = wgan.gradient_penalty(LinearCritic(3 * w / w.norm()), real, fake)
    assert gp3.item() == pytest.approx(4.0, rel=1e-5)
    # on the real critic: finite, >= 0, differentiable in the critic's weights (create_graph), seeded
    critic = wgan.Critic(wgan.WganConfig(resolution=8, width=2))
    gp_a = wgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    gp_b = wgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    assert gp_a.item() >= 0 and torch.equal(gp_a, gp_b)
    gp_a.backward()
    # every weight gets a gradient except the last bias, which does not change d critic / d x
    no_grad = [n for n, p in critic.named_parameters() if p.grad is None]
    assert no_grad == ["fc.bias"]
    assert all(torch.isfinite(p.grad).all() for p in critic.parameters() if p.grad is not None)


class StubGanomalyG(nn.Module):
    """x_hat = 0 (mid-grey), z = the first 3 pixels of x, z_hat = 0."""

    def forward(self, x):
        return torch.zeros_like(x), x.flatten(1)[:, :3], torch.zeros(len(x), 3)


def test_ganomaly_score_by_hand():
    method = GANomaly()
    method.nets, method.meta = {"G": StubGanomalyG()}, {"arch": {"resolution": 4, "channels": 1}}
    images = np.full((2, 4, 4), 0.5, dtype=np.float32)
    images[0, 0, :3] = [1.0, 0.5, 0.0]         # model input 2 * img - 1: z = [1, 0, -1]
    out = method.score(images)
    # score = mean over nz of (z - z_hat)^2: image 0 (1 + 0 + 1) / 3 = 2/3, image 1 (all grey, z = 0) 0
    np.testing.assert_allclose(out["pred_score"], [2 / 3, 0.0], rtol=1e-6)
    # image residual: |img - 0.5| (x_hat = 0 is grey 0.5): image 0 has 0.5 + 0 + 0.5 over 16 pixels
    np.testing.assert_allclose(out["image_residual"], [1 / 16, 0.0], rtol=1e-6)
    maps = method.anomaly_map(images)           # reuses the residual of score(images): smoothed |img - 0.5|
    np.testing.assert_allclose(maps, ndimage.gaussian_filter(np.abs(images - 0.5), sigma=(0, 1, 1)), atol=1e-7)


# ----------------------------------------------------------------------------- configs


def test_baseline_config_defaults_presets_and_errors():
    cfg = baseline_config("fanogan")
    assert (cfg.n_critic, cfg.lambda_gp, tuple(cfg.betas)) == (5, 10.0, (0.0, 0.9))       # the paper's WGAN-GP
    gpu = baseline_config("fanogan", "gpu", steps=7, gan_steps=3)
    assert gpu.width == GPU_PRESETS["fanogan"]["width"] and (gpu.steps, gpu.gan_steps) == (7, 3)   # overrides win
    assert baseline_config("ganomaly").w_con == 50.0 and baseline_config("vae").sigma == 0.1
    assert type(baseline_config("ae")).from_dict(baseline_config("ae", width=5).to_dict()).width == 5
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        baseline_config("nope")
    with pytest.raises(ValueError, match="unknown preset 'tpu'"):
        baseline_config("ae", "tpu")
    with pytest.raises(ValueError, match=r"ae has no setting\(s\) \['kappa', 'widht'\]"):
        baseline_config("ae", widht=3, kappa=1.0)
    with pytest.raises(ValueError, match=r"gan_steps \(5\) <= steps \(4\)"):
        RECIPES["fanogan"][1](baseline_config("fanogan", resolution=16, width=2, steps=4, gan_steps=5), _images())


# ----------------------------------------------------------------------------- bit-exact resume

# (method, steps, resume after, settings): fanogan twice, resumed inside the GAN phase (and crossing into
# the encoder phase afterwards) and resumed inside the encoder phase
RESUME_CASES = [("ae", 4, 2, {}), ("vae", 4, 2, {}), ("fanogan", 4, 1, {"gan_steps": 2}),
                ("fanogan", 4, 2, {"gan_steps": 1}), ("ganomaly", 4, 2, {})]


def _cfg(method, **kw):
    return baseline_config(method, resolution=16, **{**TINY[method], **kw})


@pytest.mark.parametrize("method,steps,half,settings", RESUME_CASES,
                         ids=[f"{m}-resume-at-{h}" for m, _, h, _ in RESUME_CASES])
def test_resume_is_bit_exact(method, steps, half, settings, resume_is_bit_exact):
    cfg, images, Trainer = _cfg(method, steps=steps, **settings), _images(), RECIPES[method][1]
    resume_is_bit_exact(lambda: Trainer(cfg, images), steps, half)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    images = _images()
    path = RECIPES["ae"][1](_cfg("ae", width=4), images).save(tmp_path / CHECKPOINT_NAME)
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"width=4 but config says 8") as err:
        RECIPES["ae"][1](_cfg("ae", width=8), images).load(path)
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="is not a vae checkpoint"):
        RECIPES["vae"][1](_cfg("vae"), images).load(path)


# ----------------------------------------------------------------------------- shipping


@pytest.fixture(scope="module")
def phantom16(tmp_path_factory):
    data = tmp_path_factory.mktemp("baselines") / "phantom16"
    write_phantom_dataset(data, n_train=24, n_test=18, n_valid=12, seed=3, config=PhantomConfig(size=16), workers=1,
                          progress=False)
    return data


@pytest.mark.parametrize("method", TRAINABLE)
def test_export_load_round_trip_and_validation_auroc(method, phantom16, tmp_path):
    run, out = tmp_path / "run", tmp_path / "shipped" / method
    train_baseline(method, phantom16, run, _cfg(method, steps=2), progress=False)
    command = f"python -m hqanogan_core train-baseline {method} --data DIR --out RUN --steps 2"
    manifest = export_baseline(run, out, method, phantom16, command)

    # the shipped weights are the run's nets, bit for bit, and nothing else (no optimiser or RNG state)
    run_tensors, run_meta = ckpt.load_checkpoint(run / CHECKPOINT_NAME)
    shipped_tensors, shipped_meta = ckpt.load_checkpoint(out / SHIPPED_WEIGHTS)
    assert sorted(shipped_tensors) == sorted(k for k in run_tensors if k.startswith("net."))
    assert all(torch.equal(v, run_tensors[k]) for k, v in shipped_tensors.items())
    nets, meta = load_baseline_nets(out, method)
    for name, net in nets.items():
        state = net.state_dict()
        saved = ckpt.unprefixed(f"net.{name}", run_tensors)
        assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in state), name
        assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert meta["arch"] == run_meta["arch"] and meta["step"] == 2 and shipped_meta["method"] == method

    # the manifest: what, how, and every file's digest; no absolute path of this machine
    assert read_baseline_manifest(out) == json.loads(json.dumps(manifest))
    assert manifest["format"] == SHIPPED_BASELINE_FORMAT and manifest["command"] == command
    assert manifest["training"]["steps"] == 2 and manifest["training"]["parameters"] == n_parameters(*nets.values())
    assert manifest["seed"] == 0 and manifest["arch"]["resolution"] == 16
    on_disk = {p.name: p for p in out.iterdir()}
    assert set(manifest["files"]) == set(on_disk) >= {SHIPPED_WEIGHTS, "manifest.json", "log.jsonl"}
    for name, entry in manifest["files"].items():
        assert entry["bytes"] == on_disk[name].stat().st_size, name
        if name != "manifest.json":
            assert entry["sha256"] == file_sha256(on_disk[name]), name
    assert manifest["total_bytes"] == sum(p.stat().st_size for p in on_disk.values())
    assert str(tmp_path) not in json.dumps(manifest)

    # the validation AUROC is reproduced from the shipped folder alone, and through the method interface
    v = manifest["validation"]
    assert v["split"] == "valid" and v["n"] == 12 and 0 < v["n_abnormal"] < 12
    assert validation_auroc(method, out, phantom16) == v
    model = METHODS[method](run=out).fit(load_split(phantom16, "train").images)
    valid = load_split(phantom16, "valid")
    assert auroc(model.score(valid.images)["pred_score"], valid.labels) == v["auroc"]
    assert model.info()["weights"] == portable_path(out)


def test_export_and_load_errors_name_the_path(phantom16, tmp_path):
    with pytest.raises(FileNotFoundError, match="empty"):
        export_baseline(tmp_path / "empty", tmp_path / "out", "ae", phantom16, "cmd")
    with pytest.raises(FileNotFoundError, match="no_weights"):
        load_baseline_nets(tmp_path / "no_weights", "ae")
    run = tmp_path / "run"
    train_baseline("ae", phantom16, run, _cfg("ae", steps=1), progress=False)
    with pytest.raises(ValueError, match=r"'ae' .*not 'vae'"):
        export_baseline(run, tmp_path / "out", "vae", phantom16, "cmd")
    with pytest.raises(ValueError, match="not 'vae'"):
        load_baseline_nets(run, "vae")
    with pytest.raises(FileNotFoundError, match="no baseline manifest"):
        read_baseline_manifest(run)
    (run / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="has format 'other'"):
        read_baseline_manifest(run)
    # weights at another resolution than the images: refused, naming the file
    with pytest.raises(ValueError, match=r"trained at 16 px but the images are 32 px"):
        METHODS["ae"](run=run).fit(np.zeros((4, 32, 32), np.float32))


# ----------------------------------------------------------------------------- CLI


def test_cli_train_resume_and_export(phantom16, tmp_path, capsys):
    run, straight, out = tmp_path / "run", tmp_path / "straight", tmp_path / "shipped_ae"
    common = ["--data", str(phantom16), "--set", "width=4", "--set", "resolution=16", "--no-progress"]
    assert main(["train-baseline", "ae", "--out", str(run), "--steps", "2", "--resume", *common]) == 0
    assert "starting from scratch" in capsys.readouterr().out
    assert main(["train-baseline", "ae", "--out", str(run), "--steps", "4", "--resume", *common]) == 0
    printed = capsys.readouterr().out
    assert "resumed train-ae" in printed and "at step 2" in printed
    summary = json.loads(printed[printed.index("{"):])
    assert summary["steps"] == 4 and summary["last"]["step"] == 4
    lines = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    assert [ln.get("event") for ln in lines].count("start") == 1 and lines[-1]["step"] == 4
    # 2 + resume + 2 through the CLI == 4 straight
    assert main(["train-baseline", "ae", "--out", str(straight), "--steps", "4", *common]) == 0
    a, _ = ckpt.load_checkpoint(run / CHECKPOINT_NAME)
    b, _ = ckpt.load_checkpoint(straight / CHECKPOINT_NAME)
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()

    assert main(["export-baseline", "ae", str(run), str(out), "--data", str(phantom16),
                 "--command", "python -m hqanogan_core train-baseline ae ..."]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["validation"] == read_baseline_manifest(out)["validation"]
    assert printed["total_bytes"] == sum(p.stat().st_size for p in out.iterdir())

    # errors: exit 2 with a message naming the path / the field
    bad = tmp_path / "not_a_run"
    assert main(["export-baseline", "ae", str(bad), str(tmp_path / "o2"), "--data", str(phantom16),
                 "--command", "x"]) == 2
    assert str(bad) in capsys.readouterr().err
    assert main(["train-baseline", "ae", "--out", str(run), "--steps", "6", "--resume", "--data", str(phantom16),
                 "--set", "width=8", "--set", "resolution=16", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "width=4 but config says 8" in err and str(run) in err
    assert main(["train-baseline", "ae", "--out", str(run), "--data", str(phantom16), "--set", "widht=4"]) == 2
    assert "widht" in capsys.readouterr().err
