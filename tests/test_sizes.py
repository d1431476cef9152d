"""Every network and the scorer at the sizes real users train and score at: 256 px (and 512 px once).

The rest of the suite runs at 16-64 px to stay fast, but radiographs are used at 256 px and up, where
other things can break: channel counts per level, the number of W+ slots (14 at 256, 16 at 512), pSp's
head depths, the 4x4 (or 16x16) maps before each baseline's linear layer, the backbones' grids. So here:

- each network at 256 px with tiny widths on the CPU: the exact output shapes, and a backward pass that
  gives finite, non-zero gradients to every parameter and to the input;
- the StyleGAN2 generator, discriminator and pSp encoder once more at 512 px;
- every trainable baseline recipe (`train.baselines.RECIPES`) takes one training step at 256 px;
- the HQ-AnoGAN scorer (terms, anomaly maps, latent repair) on tiny random networks at 256 px;
- the registered methods that train nothing (floors, Gaussian AD, PaDiM, PatchCore) at 256 px.
Everything is seeded (autouse fixture) and takes N = 2 images where a batch is needed.
"""
import numpy as np
import pytest
import torch

from hqanogan_core import scores
from hqanogan_core.terms import TERMS
from hqanogan_core.methods import METHODS
from hqanogan_core.nets import autoencoder as ae_nets
from hqanogan_core.nets import deep_svdd as svdd_nets
from hqanogan_core.nets import ganomaly as ganomaly_nets
from hqanogan_core.nets import wgan
from hqanogan_core.nets.augment import AugmentPipe
from hqanogan_core.nets.backbone import ImageNetFeatures
from hqanogan_core.nets.perceptual import PerceptualConfig, PerceptualDistance
from hqanogan_core.nets.psp import EncoderConfig, build_encoder, encoder_config_for
from hqanogan_core.nets.resnet import ResNet18, ResNetConfig
from hqanogan_core.nets.stylegan2 import Discriminator, Generator, num_ws_for
from hqanogan_core.train.baselines import RECIPES, baseline_config
from hqanogan_core.train.networks import BASELINE_NETS, seeded_nets

N = 2
# channels min(1024 // r, 16): 16 up to 64 px, 8 at 128, 4 at 256, 2 at 512 (never 0: 1024 >= 512)
TINY_STYLEGAN = dict(channel_base=1024, channel_max=16)
W_DIM = 16
TINY_PSP = dict(width=8, blocks=(1, 1, 1, 1))     # stages 8/16/32/64 channels, FPN and heads 32


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def images(n=N, r=256, c=1, seed=0, grad=False) -> torch.Tensor:
    """Uniform noise in [-1, 1]. [n, c, r, r]"""
    x = torch.rand(n, c, r, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return x.requires_grad_(grad)


def assert_gradients(modules, *inputs):
    """Every input and every trainable parameter of `modules` has a finite, non-zero gradient."""
    for x in inputs:
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    params = [(f"{type(m).__name__}.{n}", p) for m in modules for n, p in m.named_parameters() if p.requires_grad]
    assert params
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"no gradient: {missing[:5]}"
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradient: {bad[:5]}"
    zero = [n for n, p in params if not p.grad.abs().sum() > 0]
    assert not zero, f"zero gradient: {zero[:5]}"


def tiny_stylegan(r, c=1):
    G = Generator(resolution=r, img_channels=c, z_dim=W_DIM, w_dim=W_DIM, **TINY_STYLEGAN)
    D = Discriminator(resolution=r, img_channels=c, **TINY_STYLEGAN)
    return G, D


# ----------------------------------------------------------------------------- StyleGAN2 and pSp


@pytest.mark.parametrize("c", [1, 3])
def test_generator_256(c):
    G, _ = tiny_stylegan(256, c)
    assert G.num_ws == num_ws_for(256) == 14
    z = torch.randn(N, W_DIM, requires_grad=True)
    img, ws = G(z, return_ws=True)                              # [2, c, 256, 256], [2, 14, 16]
    assert img.shape == (N, c, 256, 256) and ws.shape == (N, 14, W_DIM)
    assert torch.isfinite(img).all()
    ws.retain_grad()
    img.square().mean().backward()
    assert_gradients([G], z, ws)              # mapping and synthesis, noise strengths too
    const = G.synthesis(ws.detach(), noise_mode="const")
    assert const.shape == (N, c, 256, 256) and torch.equal(const, G.synthesis(ws.detach(), noise_mode="const"))


@pytest.mark.parametrize("c", [1, 3])
def test_discriminator_256(c):
    _, D = tiny_stylegan(256, c)
    x = images(c=c, grad=True)
    logits, feats = D(x, return_features=True)                 # [2], [2, 16]
    assert logits.shape == (N,) and feats.shape == (N, D.feature_dim) and D.feature_dim == 16
    (logits.sum() + feats.square().mean()).backward()
    assert_gradients([D], x)
    assert scores.discriminator_features(D, x.detach()).shape == (N, 16)   # one image at a time (mbstd group 1)


@pytest.mark.parametrize("kind", ["gradual", "single"])
def test_encoder_256_into_generator(kind):
    G, _ = tiny_stylegan(256)
    E = build_encoder(kind, encoder_config_for(G, **TINY_PSP), w_avg=G.w_avg)
    x = images(grad=True)
    c1, c2, c3 = E.trunk(x)                                    # R/4, R/8, R/16
    assert (c1.shape, c2.shape, c3.shape) == ((N, 16, 64, 64), (N, 32, 32, 32), (N, 64, 16, 16))
    if kind == "gradual":
        assert E.split == (3, 4, 7) and len(E.heads) == 14
        levels = E.pyramid(x)
        assert {k: v.shape for k, v in levels.items()} == {"p3": (N, 32, 16, 16), "p2": (N, 32, 32, 32),
                                                           "p1": (N, 32, 64, 64)}
    ws = E(x)                                                   # [2, 14, 16]
    assert ws.shape == (N, 14, W_DIM)
    rec = G.synthesis(ws, noise_mode="const")                   # [2, 1, 256, 256]: what encoder training does
    assert rec.shape == (N, 1, 256, 256)
    ((rec - x.detach()) ** 2).mean().backward()
    assert_gradients([E], x)
    with pytest.raises(AssertionError, match="expected"):
        E(images(r=128))


def test_stylegan2_and_encoder_512():
    G, D = tiny_stylegan(512)
    assert G.num_ws == num_ws_for(512) == 16
    E = build_encoder("gradual", encoder_config_for(G, **TINY_PSP), w_avg=G.w_avg)
    assert E.split == (3, 4, 9)
    x = images(r=512, grad=True)
    ws = E(x)                                                   # [2, 16, 16]
    assert ws.shape == (N, 16, W_DIM)
    rec = G.synthesis(ws, noise_mode="const")                   # [2, 1, 512, 512]
    assert rec.shape == (N, 1, 512, 512)
    logits, feats = D(rec, return_features=True)                # [2], [2, 16]
    assert logits.shape == (N,) and feats.shape == (N, 16)
    (((rec - x.detach()) ** 2).mean() + logits.mean()).backward()
    assert_gradients([E, G.synthesis, D], x)
    z = torch.randn(N, W_DIM, requires_grad=True)
    fake = G(z)                                                 # [2, 1, 512, 512] through the mapping
    assert fake.shape == (N, 1, 512, 512)
    D(fake).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_augment_pipe_256():
    x = images(grad=True)
    y = AugmentPipe(1.0)(x)                                     # every op fires: [2, 1, 256, 256]
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- baseline networks at 256 px


def _ae(x):
    net = ae_nets.ConvAutoencoder(ae_nets.AutoencoderConfig(resolution=256, width=2, latent=8))
    assert ae_nets.stage_widths(net.cfg) == [2, 4, 8, 16, 32, 64]      # 256 -> 4 px in six stages
    assert net.encoder(x).shape == (N, 8)
    out = net(x)                                                        # [2, 1, 256, 256]
    assert out.shape == x.shape and out.abs().max() <= 1
    return [out], [net]


def _vae(x):
    net = ae_nets.ConvVAE(ae_nets.AutoencoderConfig(resolution=256, width=2, latent=8))
    x_hat, mu, logvar = net(x)                                          # [2, 1, 256, 256], [2, 8], [2, 8]
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (N, 8)
    kl = ae_nets.kl_to_standard_normal(mu, logvar)
    nll = ae_nets.gaussian_nll(x, x_hat, 0.1)
    assert kl.shape == nll.shape == (N,)
    return [x_hat, (kl + nll) / x[0].numel()], [net]


def _wgan(x):
    cfg = wgan.WganConfig(resolution=256, width=2, z_dim=8)
    assert wgan.level_widths(cfg) == [16, 16, 16, 8, 4, 2]              # 4 .. 128 px
    G, critic, E = wgan.Generator(cfg), wgan.Critic(cfg), wgan.Encoder(cfg)
    z = E(x)                                                            # [2, 8] in (-1, 1)
    assert z.shape == (N, 8) and z.abs().max() < 1
    fake = G(z)                                                         # [2, 1, 256, 256]
    assert fake.shape == x.shape and fake.abs().max() <= 1
    score, f = critic(fake, return_features=True)                       # [2], [2, 16 * 16]
    assert score.shape == (N,) and f.shape == (N, 256) and critic.trunk.dim == 256
    gp = wgan.gradient_penalty(critic, x.detach(), fake.detach())       # double backward at 256 px
    assert gp.shape == () and torch.isfinite(gp)
    return [score, f, gp], [G, critic, E]


def _ganomaly(x):
    cfg = ganomaly_nets.GanomalyConfig(resolution=256, width=2, nz=8)
    G, D = ganomaly_nets.GanomalyGenerator(cfg), ganomaly_nets.GanomalyDiscriminator(cfg)
    for net in (G, D):
        net.apply(ganomaly_nets.dcgan_init)                             # as train.networks.seeded_nets does
    x_hat, z, z_hat = G(x)                                              # [2, 1, 256, 256], [2, 8], [2, 8]
    assert x_hat.shape == x.shape and z.shape == z_hat.shape == (N, 8) and x_hat.abs().max() <= 1
    logit, feat = D(x_hat)                                              # [2], [2, 64, 4, 4]
    assert logit.shape == (N,) and feat.shape == (N, 64, 4, 4)
    return [x_hat, z, z_hat, logit, feat], [G, D]


def _deep_svdd(x, stages):
    cfg = svdd_nets.DeepSVDDNetConfig(resolution=256, width=2, stages=stages, rep_dim=8)
    phi, dec = svdd_nets.DeepSVDDEncoder(cfg), svdd_nets.DeepSVDDDecoder(cfg)
    side = 256 // 2 ** stages                                           # 16 px with 4 stages, 4 px with 6
    assert phi.features(x).shape == (N, 2 * 2 ** (stages - 1), side, side)
    rep = phi(x)                                                        # [2, 8]
    assert rep.shape == (N, 8)
    assert dec(rep).shape == x.shape                                    # pretraining: [2, 1, 256, 256]
    phi.centre.copy_(svdd_nets.svdd_centre(rep.detach()))
    dist = phi.distance(x)                                              # [2]
    assert dist.shape == (N,)
    loss = svdd_nets.deep_sad_loss(dist[:1], dist[1:], -torch.ones(1))  # Deep SAD: image 1 "labelled anomaly"
    return [dec(rep), loss], [phi, dec]


def _resnet(x):
    net = ResNet18(ResNetConfig(resolution=256, width=2, head_layers=1, n_classes=3))
    assert net.blocks(net.stem(x)).shape == (N, 16, 8, 8)               # R/32
    logits, emb = net(x)                                                # [2, 3], [2, 16]
    assert logits.shape == (N, 3) and emb.shape == (N, 16)
    return [logits], [net]


def _classifier(x):
    from hqanogan_core.nets.classifier import SmallCNN

    net = SmallCNN(256, width=2)                                        # the supervised ceiling's CNN
    logits = net(x)
    assert logits.shape == (N,)
    return [logits], [net]


NETS = {"ae": _ae, "vae": _vae, "wgan": _wgan, "ganomaly": _ganomaly, "classifier": _classifier,
        "deep_svdd-4stages": lambda x: _deep_svdd(x, 4), "deep_svdd-6stages": lambda x: _deep_svdd(x, 6),
        "resnet18": _resnet}
# which case covers each baseline's nets (train.networks.build_nets)
COVERS = {"ae": "ae", "vae": "vae", "fanogan": "wgan", "ganomaly": "ganomaly", "deepsvdd": "deep_svdd-4stages",
          "deepsad": "deep_svdd-4stages", "cutpaste": "resnet18", "anatpaste": "resnet18"}


def test_every_baseline_is_covered():
    assert set(COVERS) == set(BASELINE_NETS) == set(RECIPES) and set(COVERS.values()) <= set(NETS)


@pytest.mark.parametrize("kind", list(NETS))
def test_baseline_net_256(kind):
    x = images(grad=True)
    outputs, modules = NETS[kind](x)
    assert all(torch.isfinite(o).all() for o in outputs)
    sum(o.float().square().mean() for o in outputs).backward()
    assert_gradients(modules, x)


# one training step of every recipe at 256 px, tiny (fanogan: 1 critic step; deepsvdd/sad: pretrain, then one-class)
STEP_SETTINGS = {"ae": dict(latent=8), "vae": dict(latent=8), "fanogan": dict(gan_steps=1, n_critic=1, z_dim=8),
                 "ganomaly": dict(nz=8), "deepsvdd": dict(rep_dim=8, pretrain_steps=1),
                 "deepsad": dict(rep_dim=8, pretrain_steps=1, batch_labelled=1), "cutpaste": dict(head_layers=1),
                 "anatpaste": dict(head_layers=1)}


@pytest.mark.parametrize("method", list(RECIPES))
def test_recipe_steps_at_256(method):
    cfg = baseline_config(method, resolution=256, width=2, batch=N, steps=2, **STEP_SETTINGS[method])
    train = (images(n=4) + 1) / 2 * 0.6 + images(n=4, seed=1).abs() * 0.2 - 0.5   # some structure in [-1, 1]
    extra = (images(n=1, seed=2),) if method == "deepsad" else ()
    trainer = RECIPES[method][1](cfg, train, *extra)
    before = {k: v.detach().clone() for name, net in trainer.nets.items() for k, v in net.state_dict().items()}
    stats = [trainer.step(), trainer.step()]
    assert all(np.isfinite(v) for s in stats for v in s.values()), stats
    rebuilt = seeded_nets(method, trainer.arch(), 0)                  # what loading a checkpoint rebuilds
    assert set(rebuilt) == set(trainer.nets)
    for name, net in trainer.nets.items():
        assert all(torch.isfinite(p).all() for p in net.parameters()), name
    after = {k: v for name, net in trainer.nets.items() for k, v in net.state_dict().items()}
    assert any(not torch.equal(before[k], after[k]) for k in before)


# ----------------------------------------------------------------------------- frozen feature nets at 256 px


@pytest.fixture(scope="module")
def percep():
    return PerceptualDistance(PerceptualConfig(backend="stlpips", verbose=False))     # offline, shipped weights


def test_perceptual_and_backbone_256(percep):
    x0, x1 = images(grad=True), images(seed=1)
    dist, dmap = percep(x0, x1, spatial=True)                   # [2], [2, 1, 256, 256]
    assert dist.shape == (N,) and dmap.shape == (N, 1, 256, 256)
    assert torch.isfinite(dmap).all() and (dist > 0).all()
    dist.sum().backward()                                       # encoder training backpropagates through it
    assert torch.isfinite(x0.grad).all() and x0.grad.abs().sum() > 0
    alex = ImageNetFeatures("alex", stages=(0, 1, 2, 3, 4))
    shapes = [tuple(f.shape) for f in alex(x1)]
    assert shapes == [(N, 64, 126, 126), (N, 192, 63, 63), (N, 384, 32, 32), (N, 256, 32, 32), (N, 256, 32, 32)]


# ----------------------------------------------------------------------------- the HQ-AnoGAN scorer at 256 px


def test_scorer_256(percep):
    G, D = tiny_stylegan(256)
    with torch.no_grad():                                       # a w_avg as if tracked during training
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, W_DIM), update_w_avg=False)[:, 0].mean(0))
    G, D = G.eval(), D.eval()
    E = build_encoder("gradual", encoder_config_for(G, **TINY_PSP), w_avg=G.w_avg).eval()
    terms = list(TERMS)                                         # every registered term, maps aggregated
    config = scores.ScoreConfig(terms=tuple(terms), aggregation="topk")
    scorer = scores.HQAnoGANScorer(G, E, D=D, percep=percep, batch=4, config=config)
    scorer.fit(images(n=8, seed=10), images(n=4, seed=11))      # random "normals": 8 to fit, 4 held out
    test = images(n=3, seed=12)
    test[2, :, 100:160, 100:160] = 1.0                          # a bright square "lesion"
    out = scorer.score(test)
    slots = [f"latent_l{k}" for k in range(14)]
    assert set(out) == {*terms, *slots, *(f"z_{t}" for t in terms + slots), "hqanogan"}
    for name, v in out.items():
        assert v.shape == (3,) and np.all(np.isfinite(v)), name
    np.testing.assert_allclose(sum(out[s] for s in slots), out["latent"], rtol=1e-6)
    assert scorer.last_restored.shape == (3, 1, 256, 256)
    maps = scorer.anomaly_maps(test, scorer.last_evidence)      # [3, 256, 256]
    assert maps.shape == (3, 256, 256) and np.all(np.isfinite(maps)) and np.all(maps >= 0)
    np.testing.assert_allclose(scorer.anomaly_maps(test), maps, atol=1e-5)
    rep = scorer.repair(test)
    assert rep["repaired"].shape == (3, 1, 256, 256) and np.all(np.abs(rep["repaired"]) <= 1)
    assert rep["flagged"].shape == rep["d2"].shape == rep["d2_repaired"].shape == (3, 14)
    assert rep["ws_repaired"].shape == (3, 14, W_DIM)


# ----------------------------------------------------------------------------- methods that train nothing, at 256 px

# Options that keep them at seconds on tiny data. Skipped (they train or load networks, covered above as nets
# and recipes): ae, vae, anogan, fanogan, ganomaly, deepsvdd, deepsad, cutpaste, anatpaste, hqanogan(_repair)
# (HQ-AnoGAN needs shipped networks on disk; its scorer is tested above).
FROZEN = {"mean": {}, "iforest": {"n_estimators": 10}, "pca": {}, "gaussian_ad": {}, "padim": {"dims": 10},
          "patchcore": {"coreset": 0.01}}
MAPS = {"pca", "padim", "patchcore"}                              # the others give no map


@pytest.mark.parametrize("name", list(FROZEN))
def test_frozen_method_256(name):
    rng = np.random.default_rng(0)
    train = rng.uniform(0.2, 0.8, (6, 256, 256)).astype(np.float32)     # [6, 256, 256] in [0, 1]
    test = rng.uniform(0.2, 0.8, (N, 256, 256)).astype(np.float32)
    test[1, 100:160, 100:160] = 1.0
    method = METHODS[name](seed=0, **FROZEN[name]).fit(train)
    out = method.score(test)
    assert "pred_score" in out
    for k, v in out.items():
        assert np.asarray(v).shape == (N,) and np.all(np.isfinite(v)), k
    maps = method.anomaly_map(test)
    if name in MAPS:
        assert maps.shape == (N, 256, 256) and np.all(np.isfinite(maps))
    else:
        assert maps is None
