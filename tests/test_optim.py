"""Lookahead / Ranger: slow-weight maths by hand, state round trip through the safetensors helpers."""
import pytest
import torch

from hqanogan_core import checkpoint as ckpt
from hqanogan_core.train.optim import Lookahead, ranger




def _quadratic_steps(opt, x, n):
    for _ in range(n):
        opt.zero_grad()
        (0.5 * x.square().sum()).backward()  # grad = x
        opt.step()


def test_lookahead_slow_weights_by_hand():
    eta, k, alpha, x0 = 0.1, 3, 0.5, 2.0
    x = torch.tensor([x0], requires_grad=True)
    opt = Lookahead(torch.optim.SGD([x], lr=eta), k=k, alpha=alpha)
    # fast weights for k-1 steps: plain SGD, x_t = x0 (1 - eta)^t
    _quadratic_steps(opt, x, k - 1)
    assert x.item() == pytest.approx(x0 * (1 - eta) ** (k - 1))
    # k-th step: slow <- slow + alpha (fast - slow); fast <- slow
    _quadratic_steps(opt, x, 1)
    slow1 = x0 + alpha * (x0 * (1 - eta) ** k - x0)
    assert x.item() == pytest.approx(slow1)
    assert opt.state[x]["slow_buffer"].item() == pytest.approx(slow1)
    # second cycle starts from the synchronised point
    _quadratic_steps(opt, x, k)
    slow2 = slow1 + alpha * (slow1 * (1 - eta) ** k - slow1)
    assert x.item() == pytest.approx(slow2)


def test_lookahead_alpha_one_is_inner_optimiser():
    a = torch.tensor([1.5, -2.0], requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    la = Lookahead(torch.optim.Adam([a], lr=0.05), k=2, alpha=1.0)
    plain = torch.optim.Adam([b], lr=0.05)
    _quadratic_steps(la, a, 5)
    _quadratic_steps(plain, b, 5)
    assert torch.allclose(a, b)


def test_ranger_defaults_and_state_round_trip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = ranger(net.parameters())
    assert isinstance(opt.optimizer, torch.optim.RAdam)
    g = opt.param_groups[0]
    assert g["lr"] == 1e-4 and g["betas"] == (0.95, 0.999) and g["lookahead_k"] == 6 and g["lookahead_alpha"] == 0.5

    def run(opt, n):
        for i in range(n):
            opt.zero_grad()
            net(torch.full((4, 3), float(i))).square().mean().backward()
            opt.step()

    run(opt, 4)
    tensors, meta = ckpt.optimizer_state(opt, "opt")
    assert any(k.endswith(".slow_buffer") for k in tensors)
    ckpt.save_checkpoint(tmp_path / "o.safetensors", {**tensors, **ckpt.prefixed("net", net.state_dict())},
                         {"opt": meta})
    run(opt, 5)  # crosses a lookahead sync (step 6)
    after_a = [p.detach().clone() for p in net.parameters()]

    t2, m2 = ckpt.load_checkpoint(tmp_path / "o.safetensors")
    net.load_state_dict(ckpt.unprefixed("net", t2))
    opt2 = ranger(net.parameters())
    ckpt.load_optimizer_state(opt2, "opt", t2, m2["opt"])
    assert opt2.param_groups[0]["lookahead_step"] == 4
    run(opt2, 5)
    for a, b in zip(after_a, net.parameters()):
        assert torch.equal(a, b)


def test_lookahead_rejects_bad_args():
    p = [torch.zeros(1, requires_grad=True)]
    with pytest.raises(ValueError):
        Lookahead(torch.optim.SGD(p, lr=0.1), k=0)
    with pytest.raises(ValueError):
        Lookahead(torch.optim.SGD(p, lr=0.1), alpha=1.5)
