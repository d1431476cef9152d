"""StyleGAN2 generator and residual discriminator (the networks of StyleGAN2-ADA).

A small, flat re-implementation written from the published description
(Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" and
"Training GANs with Limited Data") and the public reference implementations, whose
numbers it follows. Plain PyTorch only: resampling is a transposed/strided convolution plus
a [1, 3, 3, 1] FIR low-pass done with `F.conv2d`, so nothing needs compiling.

Shapes:
  z      [N, z_dim]
  w      [N, w_dim]
  ws     [N, num_ws, w_dim]      (W+: one w per synthesis layer)
  image  [N, C, H, W]            (no output tanh; training data lives in [-1, 1])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
SQRT_HALF = math.sqrt(0.5)


# ----------------------------------------------------------------------------- configs


@dataclass
class GeneratorConfig:
    resolution: int = 32        # output size, a power of two in 32..1024 (smaller works too)
    img_channels: int = 1       # 1 for radiographs, 3 for RGB
    z_dim: int = 64
    w_dim: int = 64
    mapping_layers: int = 2     # official 'auto' uses 2, the paper configs 8
    channel_base: int = 2048    # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 128
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.995


@dataclass
class DiscriminatorConfig:
    resolution: int = 32
    img_channels: int = 1
    channel_base: int = 2048
    channel_max: int = 128
    mbstd_group: int = 4        # minibatch-std group size (capped by the batch)
    mbstd_channels: int = 1


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // resolution, channel_max)


def num_ws_for(resolution: int) -> int:
    """Number of W+ slots: 2 per block from 8 px up, plus the 4x4 conv and the last toRGB."""
    return 2 * int(math.log2(resolution)) - 2


def _check_resolution(resolution: int) -> int:
    log2 = int(round(math.log2(resolution)))
    if resolution < 8 or 2 ** log2 != resolution:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return log2


# ----------------------------------------------------------------------------- FIR resampling (pure functions)


def fir_kernel(taps=(1, 3, 3, 1), device=None) -> torch.Tensor:
    """Separable low-pass as a normalised 2-D kernel (sums to 1). [k, k]"""
    t = torch.as_tensor(taps, dtype=torch.float32, device=device)
    k = t[:, None] * t[None, :]
    return k / k.sum()


def _depthwise(kernel: torch.Tensor, channels: int, gain: float, dtype) -> torch.Tensor:
    """[C, 1, k, k] weight for a depthwise FIR (flipped so that conv2d, a correlation, convolves)."""
    return (kernel * gain).to(dtype).flip([0, 1])[None, None].expand(channels, 1, *kernel.shape)


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int], gain: float = 1.0,
               stride: int = 1) -> torch.Tensor:
    """Depthwise 2-D FIR filter with (before, after) zero padding on both axes. [N, C, H, W]

    `stride` > 1 keeps every stride-th output only (computed directly, not filtered-then-dropped).
    """
    c = x.shape[1]
    p0, p1 = pad
    k = _depthwise(kernel, c, gain, x.dtype)
    if p0 == p1:  # symmetric: let the convolution pad (no padded copy of x)
        return F.conv2d(x, k, padding=p0, stride=stride, groups=c)
    return F.conv2d(F.pad(x, [p0, p1, p0, p1]), k, stride=stride, groups=c)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion then FIR with gain 4 (keeps constants constant). [N,C,H,W] -> [N,C,2H,2W]

    Done as ONE depthwise transposed convolution (stride 2): zero insertion + correlation with the
    flipped kernel is a transposed convolution with the kernel itself; padding (kt - 2) // 2 crops the
    border so that the output is exactly 2H x 2W (for the even-length kernels used here).
    """
    c, kt = x.shape[1], kernel.shape[0]
    assert kt % 2 == 0, kt
    k = (kernel * 4.0).to(x.dtype)[None, None].expand(c, 1, kt, kt)
    return F.conv_transpose2d(x, k, stride=2, padding=(kt - 2) // 2, groups=c)


def downsample2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """FIR low-pass then keep every second pixel. [N,C,H,W] -> [N,C,H/2,W/2]"""
    p = kernel.shape[0] - 2
    return fir_filter(x, kernel, ((p + 1) // 2, p // 2), stride=2)


# ----------------------------------------------------------------------------- equalised-LR layers


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU 0.2 with gain sqrt(2) (keeps the signal's second moment)."""
    return F.leaky_relu(x, 0.2) * SQRT2


# Activations run in channels-last memory layout (NHWC strides, same NCHW shapes): oneDNN's CPU convolutions,
# the depthwise FIR filters above all, are markedly faster on it. Parameters keep their default layout, so
# state_dicts are unchanged. Set to False to get the plain NCHW behaviour (same numbers up to rounding).
CHANNELS_LAST = True


def _cl(x: torch.Tensor) -> torch.Tensor:
    """x in channels-last layout (no copy if it already is)."""
    return x.contiguous(memory_format=torch.channels_last) if CHANNELS_LAST and x.ndim == 4 else x


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight ~ N(0, 1)/lr_mul, scaled by lr_mul/sqrt(fan_in) at run time."""

    def __init__(self, in_features, out_features, bias=True, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_mul)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x):  # [N, in] -> [N, out]
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        x = F.linear(x, w, b)
        return lrelu(x) if self.activation else x

    def extra_repr(self):
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, activation={self.activation}"


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate (gain 1/sqrt(in*k*k)); optional FIR 2x downsampling (discriminator)."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation=False, down=False, gain=1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.activation, self.down, self.gain = activation, down, gain
        self.kernel_size = kernel_size
        self.register_buffer("fir", fir_kernel(), persistent=False)

    def forward(self, x):  # [N, I, H, W] -> [N, O, H', W']
        # gain * sqrt2 * lrelu(y) == leaky_relu(gain * sqrt2 * y) for gain > 0: fold both into w and b
        fold = not self.activation or self.gain > 0
        g = self.gain * (SQRT2 if self.activation else 1.0) if fold else 1.0
        x = _cl(x)
        w = self.weight * (self.weight_gain * g)
        b = self.bias * g if self.bias is not None else None
        if self.down:
            p = (self.fir.shape[0] - 2) + (self.kernel_size - 1)
            pad = ((p + 1) // 2, p // 2)
            if self.kernel_size == 1:  # 1x1 stride 2 reads every second blurred pixel: blur at stride 2
                x = F.conv2d(fir_filter(x, self.fir, pad, stride=2), w, b)
            else:                      # blur, then a stride-2 valid conv: H -> H/2
                x = F.conv2d(fir_filter(x, self.fir, pad), w, b, stride=2)
        else:
            x = F.conv2d(x, w, b, padding=self.kernel_size // 2)
        if not fold:  # a non-positive gain does not commute with the leaky ReLU
            return lrelu(x) * self.gain
        return F.leaky_relu_(x, 0.2) if self.activation else x


# ----------------------------------------------------------------------------- modulated convolution


def modulated_conv2d(x, weight, styles, demodulate=True, up=False, fir=None, bias=None, gain=1.0, fused=False):
    """Per-sample weight modulation (+ demodulation): conv(x, weight * styles) [* demod] * gain + bias.

    x [N, I, H, W], weight [O, I, k, k] (already gain-scaled), styles [N, I], bias [O] or None
    -> [N, O, H, W] (or [N, O, 2H, 2W] with up=True: transposed conv then FIR gain 4).
    `fused` picks the implementation; both give the same result up to float rounding.
    fused=True: ONE grouped convolution with per-sample folded weights. fused=False (default, what the
    official code does in training): one shared-weight convolution with the styles and demodulation
    coefficients applied to the activations -- measured faster on CPU at every size we train
    (grouped convolutions with N groups of few channels are poorly optimised there, above all backward).
    A 1x1 kernel without up-sampling (toRGB) is one batched matrix product.
    """
    n, in_ch, h, wd = x.shape
    out_ch, _, k, _ = weight.shape
    assert styles.shape == (n, in_ch), (styles.shape, x.shape)
    if k == 1 and not up:
        w = weight[None, :, :, 0, 0] * styles[:, None, :]                  # [N, O, I]
        if demodulate:
            w = w * torch.rsqrt(w.square().sum(dim=2, keepdim=True) + 1e-8)
        if gain != 1:
            w = w * gain
        if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            x = x.reshape(n, in_ch, h * wd)                                    # [N, I, HW]
            y = torch.bmm(w, x) if bias is None else torch.baddbmm(bias[None, :, None], w, x)
            return y.reshape(n, out_ch, h, wd)
        x = x.permute(0, 2, 3, 1).reshape(n, h * wd, in_ch)                   # channels-last: a view [N, HW, I]
        w = w.transpose(1, 2)                                                  # [N, I, O]
        y = torch.bmm(x, w) if bias is None else torch.baddbmm(bias[None, None, :], x, w)
        return y.reshape(n, h, wd, out_ch).permute(0, 3, 1, 2)                # [N, O, H, W], channels-last
    if fused:
        w = weight[None] * styles[:, None, :, None, None]                 # [N, O, I, k, k]
        if demodulate:
            d = torch.rsqrt(w.square().sum(dim=[2, 3, 4]) + 1e-8)         # [N, O]
            w = w * (d * gain)[:, :, None, None, None]
        elif gain != 1:
            w = w * gain
        x = x.reshape(1, n * in_ch, h, wd)
        if up:
            w = w.transpose(1, 2).reshape(n * in_ch, out_ch, k, k)     # conv_transpose wants [in, out/groups, k, k]
            x = F.conv_transpose2d(x, w, stride=2, groups=n)           # [1, N*O, 2H+k-2, ...]
            x = x.reshape(n, out_ch, *x.shape[2:])
            return _up_fir(x, fir, k, bias)
        w = w.reshape(n * out_ch, in_ch, k, k)
        x = F.conv2d(x, w, None if bias is None else bias.repeat(n), padding=k // 2, groups=n)
        return x.reshape(n, out_ch, h, wd)
    # unfused: shared weight, styles and demodulation on the activations
    coef = None
    if demodulate:
        coef = torch.rsqrt(styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8)  # [N, O]
        if gain != 1:
            coef = coef * gain
    elif gain != 1:
        styles = styles * gain
    x = _cl(x * styles[:, :, None, None])
    if up:
        x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)    # [N, O, 2H+k-2, ...]
        x = _up_fir(x, fir, k, None)
    else:
        x = F.conv2d(x, weight, padding=k // 2)
    if coef is not None:
        coef = coef[:, :, None, None]
        return x * coef if bias is None else torch.addcmul(bias[None, :, None, None], x, coef)
    return x if bias is None else x + bias[None, :, None, None]


def _up_fir(x, fir, k, bias):
    """The FIR (gain 4) after a stride-2 transposed k x k conv: [N, O, 2H+k-2, ...] -> [N, O, 2H, 2W]."""
    p = (fir.shape[0] - 2) - (k - 1)
    p0, p1 = (p + 1) // 2 + 1, p // 2 + 1
    assert p0 == p1, (p0, p1)
    c = x.shape[1]
    return F.conv2d(x, _depthwise(fir, c, 4.0, x.dtype), bias, padding=p0, groups=c)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+ optional 2x up) -> noise -> bias -> lrelu."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, up=False):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("fir", fir_kernel(), persistent=False)
        self.up, self.resolution = up, resolution

    def forward(self, x, w, noise_mode="random"):  # x [N, I, r(/2), r(/2)], w [N, w_dim] -> [N, O, r, r]
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        styles = self.affine(w)
        # lrelu(y) * sqrt2 == leaky_relu(sqrt2 * y) (positive homogeneity): the sqrt2 gain is folded into
        # the demodulation, the bias and the noise strength, so the big tensor sees only in-place adds
        # and one in-place leaky ReLU.
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, demodulate=True, up=self.up, fir=self.fir,
                             bias=self.bias * SQRT2, gain=SQRT2)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
            x = x.add_(noise * (self.noise_strength * SQRT2))
        elif noise_mode == "const":
            x = x.add_(self.noise_const.to(x.dtype) * (self.noise_strength * SQRT2))
        return F.leaky_relu_(x, 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, linear output."""

    def __init__(self, in_channels, img_channels, w_dim):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x, w):  # [N, I, r, r] -> [N, C, r, r]
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False, bias=self.bias)


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' generator: conv0 (up 2), conv1, toRGB; img = up(img) + toRGB(x)."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels):
        super().__init__()
        self.resolution = resolution
        self.is_first = in_channels == 0
        if self.is_first:  # 4x4: learned constant input, no conv0
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGB(out_channels, img_channels, w_dim)
        self.register_buffer("fir", fir_kernel(), persistent=False)
        self.num_conv = 1 if self.is_first else 2

    def forward(self, x, img, ws, noise_mode="random"):
        # ws [N, num_conv + 1, w_dim]; x [N, I, r/2, r/2] or None; img [N, C, r/2, r/2] or None
        if self.is_first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv])
        img = y if img is None else upsample2d(img, self.fir) + y
        return x, img


# ----------------------------------------------------------------------------- generator


class MappingNetwork(nn.Module):
    """z -> w: second-moment normalisation, `num_layers` FC layers (lr_mul 0.01), w_avg tracking, truncation."""

    def __init__(self, z_dim, w_dim, num_ws, num_layers=2, lr_mul=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.w_avg_beta = z_dim, w_dim, num_ws, w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation=True) for i in range(num_layers)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, psi=1.0, truncation_cutoff=None, update_w_avg=None):
        # z [N, z_dim] -> ws [N, num_ws, w_dim]
        assert z.ndim == 2 and z.shape[1] == self.z_dim, z.shape
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        # Like BatchNorm statistics: w_avg follows the batches seen in train mode unless told otherwise.
        if self.training if update_w_avg is None else update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x[:, None, :].repeat(1, self.num_ws, 1)
        if psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cutoff] = self.w_avg.to(ws.dtype).lerp(ws[:, :cutoff], psi)
        return ws


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, C, R, R]."""

    def __init__(self, w_dim, resolution, img_channels, channel_base, channel_max):
        super().__init__()
        log2 = _check_resolution(resolution)
        self.w_dim, self.resolution, self.img_channels = w_dim, resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        ch = {r: channels_at(r, channel_base, channel_max) for r in self.block_resolutions}
        self.blocks = nn.ModuleList()
        for r in self.block_resolutions:
            in_ch = ch[r // 2] if r > 4 else 0
            self.blocks.append(SynthesisBlock(in_ch, ch[r], w_dim, r, img_channels))
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1
        assert self.num_ws == num_ws_for(resolution)

    def forward(self, ws, noise_mode="random"):
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), ws.shape
        x = img = None
        w_idx = 0
        for block in self.blocks:
            # each block reads its convs' ws plus the next slot for toRGB (shared with the next conv0)
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_conv + 1], noise_mode)
            w_idx += block.num_conv
        assert img.shape == (ws.shape[0], self.img_channels, self.resolution, self.resolution)
        return img.contiguous()  # plain NCHW for callers (a no-op for 1 channel; RGB is channels-last inside)


class Generator(nn.Module):
    """Mapping + synthesis. `G(z)` -> image; `G.synthesis(ws)` for W+ inputs (the encoder feeds these)."""

    def __init__(self, cfg: GeneratorConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or GeneratorConfig(**overrides)
        self.cfg = cfg
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.resolution, self.img_channels = cfg.resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg.w_dim, cfg.resolution, cfg.img_channels, cfg.channel_base,
                                          cfg.channel_max)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            cfg.z_dim, cfg.w_dim, self.num_ws, cfg.mapping_layers, cfg.mapping_lr_mul, cfg.w_avg_beta
        )

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def forward(self, z, psi=1.0, truncation_cutoff=None, noise_mode="random", return_ws=False):
        ws = self.mapping(z, psi=psi, truncation_cutoff=truncation_cutoff)  # [N, num_ws, w_dim]
        img = self.synthesis(ws, noise_mode=noise_mode)                     # [N, C, R, R]
        return (img, ws) if return_ws else img


# ----------------------------------------------------------------------------- discriminator


def minibatch_std(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append the across-group std of features as `num_channels` extra channels. [N,C,H,W] -> [N,C+F,H,W]

    The official layer uses G = min(group_size, N) and fails unless N is divisible by G. Here, if N is not
    divisible, G falls back to the largest divisor of N that is <= group_size (G=1 for a prime N > group_size,
    where the std is 0) so odd last batches and single-image scoring never crash.
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    while n % g:
        g -= 1
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)          # [G, n, F, c, H, W]; sample i is in group i % n
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()      # [n, F, c, H, W]
    y = y.mean(dim=[2, 3, 4])                       # [n, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)   # [N, F, H, W]
    return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: (fromRGB) -> conv 3x3 -> conv 3x3 down 2, plus 1x1 down-2 skip; both branches x sqrt(0.5)."""

    def __init__(self, in_channels, out_channels, img_channels, first=False):
        super().__init__()
        self.fromrgb = EqualConv2d(img_channels, in_channels, 1, activation=True) if first else None
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True, down=True, gain=SQRT_HALF)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True, gain=SQRT_HALF)

    def forward(self, x):  # [N, I, r, r] (or image [N, C, r, r] in the first block) -> [N, O, r/2, r/2]
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        return self.skip(x) + self.conv1(self.conv0(x))


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator. `D(img)` -> logits [N]; `D(img, return_features=True)` also
    returns the epilogue features [N, F] that feed the final FC (used by the f-AnoGAN feature residual)."""

    def __init__(self, cfg: DiscriminatorConfig | None = None, **overrides):
        super().__init__()
        cfg = cfg or DiscriminatorConfig(**overrides)
        self.cfg = cfg
        log2 = _check_resolution(cfg.resolution)
        self.resolution, self.img_channels = cfg.resolution, cfg.img_channels
        resolutions = [2**i for i in range(log2, 2, -1)]  # R, R/2, ..., 8
        ch = lambda r: channels_at(r, cfg.channel_base, cfg.channel_max)  # noqa: E731
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(ch(r), ch(r // 2), cfg.img_channels, first=(r == cfg.resolution)) for r in resolutions
        )
        c4 = ch(4)
        self.mbstd_group, self.mbstd_channels = cfg.mbstd_group, cfg.mbstd_channels
        self.conv = EqualConv2d(c4 + cfg.mbstd_channels, c4, 3, activation=True)
        self.fc = EqualLinear(c4 * 16, c4, activation=True)
        self.out = EqualLinear(c4, 1)
        self.feature_dim = c4

    def forward(self, img, return_features=False):
        assert img.ndim == 4 and img.shape[1:] == (self.img_channels, self.resolution, self.resolution), img.shape
        x = img
        for block in self.blocks:
            x = block(x)                                      # ... -> [N, c4, 4, 4]
        x = minibatch_std(x, self.mbstd_group, self.mbstd_channels)
        x = self.conv(x)                                      # [N, c4, 4, 4]
        features = self.fc(x.flatten(1))                      # [N, c4]
        logits = self.out(features).squeeze(1)                # [N]
        return (logits, features) if return_features else logits
