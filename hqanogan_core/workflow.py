"""One switch for the whole book and one command for the whole pipeline.

The book reads three environment variables, here and nowhere else:

    HQANOGAN_DATA=/path/to/mvtec-layout   a converted dataset (`python -m hqanogan_core convert ...`)
    HQANOGAN_PRESET=paper256              a key of RUN_PRESETS below (default cpu64)
    HQANOGAN_DEVICE=cuda                  where networks train and score (default: cuda when present, else cpu)
    HQANOGAN_OUT=/path/to/run             where trained networks and results go (default: a folder in the cache)

Unset, `workspace()` is the phantom book: the 64 px phantom and the shipped networks and results.
Set, every chapter runs on that dataset: shipped networks are used only when they were trained on exactly
this data at this resolution; otherwise the chapter trains them with the functions below, which resume a
killed run and skip a finished one. The command line does the same without a notebook:

    python -m hqanogan_core pipeline --data DIR --out RUN --preset paper256 [--resume]

runs train-gan -> train-encoder -> score -> benchmark. Each step writes RUN/<step>/done.json when it has
finished (atomically, last); a step with done.json is skipped, a step folder without it is continued
from its checkpoint when --resume is given (and refused otherwise, so nothing is overwritten by accident).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .paths import cache_dir, data_dir

ENV = {"data": "HQANOGAN_DATA", "preset": "HQANOGAN_PRESET", "device": "HQANOGAN_DEVICE", "out": "HQANOGAN_OUT"}
STEPS = ("gan", "encoder", "score", "benchmark")
DONE = "done.json"

# A run preset names the GAN preset (hqanogan_core.presets) with overrides, the encoder's training
# config, the baselines' recipe scale, and the book's own knobs. Presets are data.
RUN_PRESETS: dict[str, dict] = {
    # the shipped 64 px networks were trained with exactly these settings on 2 CPU cores
    "cpu64": dict(gan="cpu64", gan_overrides=dict(total_kimg=60, snapshot_kimg=5), encoder=dict(steps=6000, batch=8),
                  baselines="cpu", method_options={},
                  book=dict(short_kimg=1.6, projector_steps=300, ablation_steps=400)),
    # one GPU, the official 'auto' configuration (presets.auto_values); the encoder gets 50k steps of batch 8
    # (pSp: 500k at 1024 px), the baselines their papers' scale (train.baselines.GPU_PRESETS)
    "paper256": dict(gan="paper256", gan_overrides={}, encoder=dict(steps=50_000, batch=8, snapshot_every=1000,
                                                                    log_every=100),
                     baselines="gpu", method_options={},
                     book=dict(short_kimg=1.6, projector_steps=300, ablation_steps=2000)),
    "paper512": dict(gan="paper512", gan_overrides={}, encoder=dict(steps=50_000, batch=8, snapshot_every=1000,
                                                                    log_every=100),
                     baselines="gpu", method_options={},
                     book=dict(short_kimg=1.6, projector_steps=300, ablation_steps=2000)),
    # a smoke test of every code path in minutes on a CPU (meaningless numbers): 32 px, tiny widths
    "tiny": dict(gan="cpu32", gan_overrides=dict(channel_base=256, channel_max=32, z_dim=32, w_dim=32, batch=4,
                                                  total_kimg=0.1, log_kimg=0.02, snapshot_kimg=0.05, swd_kimg=0.1,
                                                  swd_images=16),
                 encoder=dict(steps=20, batch=4, width=8, blocks=(1, 1, 1, 1), log_every=5, snapshot_every=10),
                 baselines="cpu",
                 method_options={**{m: {"steps": 3} for m in ("ae", "vae", "ganomaly", "cutpaste", "anatpaste")},
                                 "fanogan": {"steps": 4, "settings": {"gan_steps": 2, "batch": 8}},
                                 "anogan": {"steps": 4, "settings": {"gan_steps": 2, "batch": 8}, "iterations": 3},
                                 "deepsvdd": {"steps": 4, "settings": {"pretrain_steps": 2, "batch": 16}},
                                 "deepsad": {"steps": 4, "settings": {"pretrain_steps": 2, "batch": 16},
                                             "n_labelled": 5},
                                 "padim": {"n_fit": 64}, "patchcore": {"n_fit": 64}, "gaussian_ad": {"n_fit": 64},
                                 "supervised": {"n_normal": 64, "n_per_type": 16, "steps": 20}},
                 book=dict(short_kimg=0.05, projector_steps=5, ablation_steps=5)),
}


def run_preset(name: str) -> dict:
    if name not in RUN_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(RUN_PRESETS)}")
    return RUN_PRESETS[name]


def gan_config(preset: str, device: str = "auto"):
    from .presets import get_preset

    p = run_preset(preset)
    return get_preset(p["gan"], **p["gan_overrides"], device=device)


def encoder_config(preset: str, device: str = "auto"):
    from .train.encoder import EncoderTrainConfig

    return EncoderTrainConfig(**run_preset(preset)["encoder"], device=device)


def method_options(preset: str, methods, device: str = "cpu") -> dict:
    """Constructor options of each method under a run preset: its training budget and the device."""
    import inspect

    from .methods import METHODS
    from .train.baselines import GPU_PRESETS

    p = run_preset(preset)
    options = {}
    for name in methods:
        opts = dict(p["method_options"].get(name, {}))
        if p["baselines"] == "gpu" and name in GPU_PRESETS:
            opts.setdefault("settings", dict(GPU_PRESETS[name]))
        if "device" in inspect.signature(METHODS[name]).parameters and device != "cpu":
            opts["device"] = device
        if opts:
            options[name] = opts
    return options


def resolve_device(name: str | None) -> str:
    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# ----------------------------------------------------------------------------- the steps, resumable


def _write_done(folder: Path, record: dict) -> None:
    tmp = folder / (DONE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, folder / DONE)


def step_done(folder: Path) -> dict | None:
    """The completion record of a step folder, or None when the step has not finished."""
    file = Path(folder) / DONE
    return json.loads(file.read_text()) if file.is_file() else None


def _start_step(folder: Path, what: dict, resume: bool) -> dict | None:
    """The finished record (skip), or None (run): refuses a started step without --resume, and a finished
    one made from other data or another preset."""
    done = step_done(folder)
    if done is not None:
        for key, value in what.items():
            if done.get(key) != value:
                raise ValueError(f"{folder} was made with {key} {done.get(key)!r}, not {value!r}; "
                                 f"use another --out or delete {folder}")
        return done
    if folder.exists() and any(folder.iterdir()) and not resume:
        raise FileExistsError(f"{folder} holds an unfinished run; pass --resume to continue it "
                              f"(or delete the folder to start again)")
    folder.mkdir(parents=True, exist_ok=True)
    return None


def ensure_gan(data, out, preset: str, device: str = "auto", resume: bool = True, progress: bool = True) -> Path:
    """OUT/gan: StyleGAN2-ADA trained on DATA/train/good with the preset (skipped when finished)."""
    from .train.gan import train_gan

    folder = Path(out) / "gan"
    what = {"data": str(Path(data).resolve()), "preset": preset}
    if _start_step(folder, what, resume) is None:
        summary = train_gan(data, folder, gan_config(preset, device), resume=True, progress=progress)
        _write_done(folder, {**what, "step": "gan", "kimg": summary.get("kimg"), "seconds": summary.get("seconds"),
                             "checkpoint": str(folder / "latest.safetensors")})
    return folder


def ensure_encoder(data, out, preset: str, device: str = "auto", resume: bool = True, progress: bool = True) -> Path:
    """OUT/encoder: a pSp encoder for OUT/gan's generator (skipped when finished)."""
    from .train.encoder import train_encoder

    gan = ensure_gan(data, out, preset, device, resume, progress)
    folder = Path(out) / "encoder"
    what = {"data": str(Path(data).resolve()), "preset": preset}
    if _start_step(folder, what, resume) is None:
        summary = train_encoder(gan, data, folder, encoder_config(preset, device), resume=True, progress=progress,
                                gan_path=gan)
        _write_done(folder, {**what, "step": "encoder", "steps": summary.get("steps"),
                             "seconds": summary.get("seconds"), "perceptual": summary.get("perceptual")})
    return folder


def ensure_score(data, out, preset: str, device: str = "auto", resume: bool = True, progress: bool = True,
                 split: str = "test") -> Path:
    """OUT/score: HQ-AnoGAN's per-image scores (CSV) and maps (16-bit PNG) of DATA/<split>."""
    from .benchmark import score_split

    gan = ensure_gan(data, out, preset, device, resume, progress)
    encoder = ensure_encoder(data, out, preset, device, resume, progress)
    folder = Path(out) / "score"
    what = {"data": str(Path(data).resolve()), "preset": preset, "split": split}
    if _start_step(folder, what, True) is None:       # scoring keeps no state: a rerun starts it again
        summary = score_split(data, folder / f"{split}.csv", options={"run": str(gan), "encoder": str(encoder),
                                                                      "device": resolve_device(device)},
                              maps_dir=folder / "maps", split=split)
        _write_done(folder, {**what, "step": "score", "n": summary["n"], "auroc": summary["auroc"],
                             "csv": str(folder / f"{split}.csv"), "maps": str(folder / "maps")})
    return folder


def ensure_benchmark(data, out, preset: str, methods, device: str = "auto", resume: bool = True,
                     progress: bool = True, n_boot: int = 1000) -> Path:
    """OUT/benchmark: every method in `methods` through the one harness; each finished method is cached in
    OUT/benchmark/cache, so a killed benchmark resumes at the method it was running."""
    from .benchmark import run_benchmark

    folder = Path(out) / "benchmark"
    what = {"data": str(Path(data).resolve()), "preset": preset, "methods": list(methods)}
    if _start_step(folder, what, True) is None:
        options = hqanogan_options(data, out, preset, methods, device, resume, progress)
        report = run_benchmark(data, list(methods), out=folder, n_boot=n_boot, method_options=options or None,
                               cache=folder / "cache")
        _write_done(folder, {**what, "step": "benchmark", "report": str(folder / "benchmark.json"),
                             "auroc": {m: r["image"]["auroc"]["value"] for m, r in report["methods"].items()}})
    return folder


def hqanogan_options(data, out, preset, methods, device="auto", resume=True, progress=True) -> dict:
    """method_options for a benchmark on a trained run: HQ-AnoGAN's networks from OUT/gan + OUT/encoder."""
    options = method_options(preset, methods, resolve_device(device))
    for name in ("hqanogan", "hqanogan_repair"):
        if name in methods:
            gan = ensure_gan(data, out, preset, device, resume, progress)
            encoder = ensure_encoder(data, out, preset, device, resume, progress)
            options.setdefault(name, {}).update(run=str(gan), encoder=str(encoder))
    return options


def run_pipeline(data, out, preset: str = "cpu64", methods=None, device: str = "auto", resume: bool = False,
                 progress: bool = True, log=print) -> dict:
    """train-gan -> train-encoder -> score -> benchmark into OUT; returns {step: folder}."""
    from .data.folder import scan_split
    from .methods import DETECTORS, METHODS

    scan_split(data, "train")           # a folder without training normals fails here, named, before any work

    methods = list(methods) if methods else ["pca", "ae", "fanogan", "padim", "patchcore", "hqanogan"]
    if methods == ["all"]:
        methods = list(DETECTORS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; available: {', '.join(METHODS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = {}
    for step in STEPS:
        before = step_done(out / step)
        if step == "gan":
            folders[step] = ensure_gan(data, out, preset, device, resume, progress)
        elif step == "encoder":
            folders[step] = ensure_encoder(data, out, preset, device, resume, progress)
        elif step == "score":
            folders[step] = ensure_score(data, out, preset, device, resume, progress)
        else:
            folders[step] = ensure_benchmark(data, out, preset, methods, device, resume, progress)
        log(f"[pipeline] {step}: {'already complete, skipped' if before else 'done'} -> {folders[step]}")
    return folders


# ----------------------------------------------------------------------------- what the book reads


@dataclass
class GanRecord:
    """A generator and what chapter 2 says about it: where it came from, its log and the real images."""
    G: torch.nn.Module
    D: torch.nn.Module
    source: str                 # "data/pretrained/gan64" or the run folder
    command: str
    log: list
    facts: dict                 # kimg, step_hours, wall_hours, device, p, mb, revision, preset, resolution
    reals: torch.Tensor         # [n, 1, R, R] training images in [-1, 1], as the training loader saw them
    swd_recorded: float         # the SWD recorded when the network was shipped (nan for a fresh run)
    shipped: bool
    manifest: dict | None = None

    def swd_to_reals(self, real: torch.Tensor) -> float:
        """SWD x1e3 of G_ema's samples to `real`: the export's recipe when shipped, else 256 samples, seed 0."""
        from .pretrained import fake_images_for_swd, swd_from_recipe
        from .swd import swd

        if self.manifest is not None:
            return swd_from_recipe(self.G, self.manifest, real=real)["avg"]
        return swd(real, fake_images_for_swd(self.G, len(real), seed=0), seed=0)["avg"]


@dataclass
class Workspace:
    """The data, preset and device every chapter uses; `workspace()` builds it from the environment."""
    data: Path
    preset: str = "cpu64"
    device: str = "cpu"
    out: Path | None = None
    default: bool = True        # True: the phantom book with the shipped networks and results
    progress: bool = True
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def knobs(self) -> dict:
        """The book's own settings under this preset (short GAN run length, projector and ablation steps)."""
        return run_preset(self.preset)["book"]

    @property
    def resolution(self) -> int:
        return gan_config(self.preset).resolution

    def folder(self, name: str) -> Path:
        """Where a chapter keeps what it computes: the cache for the phantom book, OUT/book otherwise."""
        path = cache_dir() / name if self.default else Path(self.out) / "book" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def selection(self) -> Path:
        """The folder whose valid/ split the score study chooses on: for the phantom book the larger selection
        phantom (`data.default.selection_phantom`, generated on first use), otherwise the data itself."""
        if not self.default:
            return self.data
        from .data.default import selection_phantom

        return selection_phantom(self.resolution)

    def reuse(self) -> list[Path]:
        """Stored benchmark results to reuse: the shipped ones for the phantom book (keys are still checked)."""
        return [data_dir() / "pretrained" / "results64"] if self.default else []

    def results_cache(self) -> Path:
        return self.folder("results64" if self.default else "results")

    def options(self, methods) -> dict | None:
        """method_options for run_benchmark: None for the phantom book (the shipped networks, default
        recipes: the keys of the shipped results), the run's networks and the preset's budgets otherwise."""
        if self.default:
            return None
        return hqanogan_options(self.data, self.out, self.preset, methods, self.device, True, self.progress) or None

    def uses_shipped(self, kind: str) -> bool:
        """Whether the shipped `kind` ('gan' or 'encoder') was trained on exactly this data at this resolution."""
        from . import pretrained as pt

        path = pt.default_gan_path() if kind == "gan" else pt.default_encoder_path()
        available = pt.pretrained_gan_available(path) if kind == "gan" else pt.pretrained_encoder_available(path)
        if not available:
            return False
        manifest = pt.read_manifest(path) if kind == "gan" else pt.read_encoder_manifest(path)
        return shipped_matches(manifest, self.data, self.resolution)

    def gan_run(self) -> Path:
        """A generator folder for `pipeline.load_gan`: shipped when it fits, else trained (resumable)."""
        from . import pretrained as pt

        if self.uses_shipped("gan"):
            return pt.default_gan_path()
        return ensure_gan(self.data, self.out, self.preset, self.device, True, self.progress)

    def pipeline(self):
        """G, D and E ready for scoring (pipeline.load_pipeline), on this workspace's device."""
        from . import pretrained as pt
        from .pipeline import load_pipeline

        if "pipeline" not in self._cache:
            if self.uses_shipped("encoder"):
                pipe = load_pipeline(pt.default_encoder_path(), device=self.device)
            else:
                gan = self.gan_run()
                encoder = ensure_encoder(self.data, self.out, self.preset, self.device, True, self.progress)
                pipe = load_pipeline(gan, encoder, device=self.device)
            self._cache["pipeline"] = pipe
        return self._cache["pipeline"]

    def encoder_record(self) -> dict:
        """Chapter 3's facts about the encoder: steps, images seen, hours, megabytes, backend, command, note, log."""
        from . import pretrained as pt
        from .train.loop import read_log, step_seconds

        if self.uses_shipped("encoder"):
            folder = pt.default_encoder_path()
            m = pt.read_encoder_manifest(folder)
            t = m["training"]
            return dict(steps=t["steps"], images=t["images_seen"], seconds=t["step_seconds"],
                        mb=m["total_bytes"] / 1e6, perceptual=m["perceptual"], command=m["command"],
                        note=m.get("note", ""), gan=m["gan"], log=read_log(folder / "log.jsonl"),
                        source=str(folder.relative_to(data_dir().parent)))
        folder = ensure_encoder(self.data, self.out, self.preset, self.device, True, self.progress)
        done, lines = step_done(folder), read_log(folder / "log.jsonl")
        cfg = encoder_config(self.preset)
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        return dict(steps=done["steps"], images=done["steps"] * cfg.batch, seconds=step_seconds(lines), mb=size / 1e6,
                    perceptual=done["perceptual"], command=f"workflow.ensure_encoder(preset={self.preset!r})", note="",
                    gan={"path": str(Path(self.out) / "gan")}, log=lines, source=str(folder))

    def gan_record(self, n_reals: int = 512) -> GanRecord:
        """Chapter 2's generator: the shipped one with its manifest, or this workspace's trained run."""
        from . import pretrained as pt
        from .train.export import wall_clock, training_time
        from .train.gan import load_images
        from .train.loop import read_log

        if self.uses_shipped("gan"):
            G, D, manifest = pt.load_pretrained_gan(device=self.device)
            folder = pt.default_gan_path()
            return GanRecord(G, D, str(folder.relative_to(data_dir().parent)), manifest["command"],
                             read_log(folder / "log.jsonl"), pt.manifest_facts(manifest),
                             pt.real_images_for_swd(manifest, n=n_reals), manifest["swd_export"]["avg"], True,
                             manifest)
        from . import checkpoint as ckpt
        from .pipeline import load_gan

        folder = self.gan_run()
        G, D, _ = load_gan(folder, self.device)
        meta = ckpt.read_meta(folder / "latest.safetensors")
        lines = [ln for ln in read_log(folder / "log.jsonl") if "kimg" in ln]
        seconds = training_time(lines)
        tensors, _ = ckpt.load_checkpoint(folder / "latest.safetensors")
        wall = wall_clock(folder, folder / "latest.safetensors")["seconds"]     # the export's measure
        facts = dict(kimg=meta["kimg"], step_hours=seconds / 3600, wall_hours=wall / 3600, device=str(self.device),
                     p=float(tensors["augment.p"]), mb=(folder / "latest.safetensors").stat().st_size / 1e6,
                     revision="this build", preset=self.preset, resolution=G.resolution)
        reals = load_images(self.data, G.resolution, G.img_channels)[:n_reals]
        return GanRecord(G, D, str(folder), f"workflow.ensure_gan(preset={self.preset!r})", lines, facts, reals,
                         float("nan"), False)


def shipped_matches(manifest: dict, data, resolution: int) -> bool:
    """True when a shipped network's manifest says it was trained on this folder's phantom recipe at this
    resolution (real datasets never match: nothing is shipped for them)."""
    phantom = (manifest.get("data") or {}).get("phantom")
    recipe_file = Path(data) / "phantom.json"
    arch = manifest.get("architecture", {}).get("generator", {}).get("resolution")
    res = arch if arch is not None else manifest.get("encoder", {}).get("config", {}).get("resolution")
    if phantom is None or not recipe_file.is_file() or res != resolution:
        return False
    recipe = json.loads(recipe_file.read_text())
    return all(recipe.get(k) == phantom.get(k) for k in ("generator", "version", "seed", "config", "n_train"))


def workspace(environ=None) -> Workspace:
    """The book's workspace from the environment (see the module docstring). Unset: the phantom book."""
    env = os.environ if environ is None else environ
    data = env.get(ENV["data"])
    preset = env.get(ENV["preset"]) or "cpu64"
    run_preset(preset)
    device = resolve_device(env.get(ENV["device"]))
    if not data:
        from .data.default import phantom_dataset

        if preset != "cpu64":
            raise ValueError(f"{ENV['preset']}={preset} needs {ENV['data']}: the shipped phantom book is 64 px")
        data = phantom_dataset()        # networks are trained into OUT only if the shipped ones are missing
        return Workspace(data, "cpu64", device, _out(env, data, "cpu64"), default=True)
    data = Path(data).expanduser()
    if not (data / "train").is_dir():
        raise FileNotFoundError(f"{ENV['data']}={data}: no train/ folder (expected the MVTec AD layout; convert a "
                                f"dataset with `python -m hqanogan_core convert ...`)")
    _check_resolution(data, preset)
    return Workspace(data.resolve(), preset, device, _out(env, data.resolve(), preset), default=False)


def _check_resolution(data: Path, preset: str) -> None:
    """The chapters compare maps with masks pixel for pixel: the data must be at the preset's resolution."""
    from .data.folder import DatasetLayoutError, read_grayscale, scan_split

    try:
        samples = scan_split(data, "train")
    except DatasetLayoutError as err:       # e.g. an empty train/good: say which variable pointed there
        raise DatasetLayoutError(f"{ENV['data']}={data}: {err}") from err
    side = read_grayscale(samples[0].path).shape
    want = gan_config(preset).resolution
    if side != (want, want):
        raise ValueError(f"{samples[0].path} is {side[0]} x {side[1]} px but preset {preset!r} works at {want} px: "
                         f"convert with --size {want}, or choose a preset for {side[0]} px")


def kinds_in(types) -> list[str]:
    """The anomaly types present, the phantom's in its usual order first, then any others sorted."""
    from .data.phantom import ANOMALY_TYPES

    present = set(np.asarray(types).tolist()) - {"good"}
    return [k for k in ANOMALY_TYPES if k in present] + sorted(present - set(ANOMALY_TYPES))


def _out(env, data: Path, preset: str) -> Path:
    out = env.get(ENV["out"])
    return Path(out).expanduser() if out else cache_dir() / "workspaces" / f"{data.name}-{preset}"


def describe(ws: Workspace) -> str:
    """One line for the top of a chapter: what it runs on."""
    if ws.default:
        return f"phantom book: {ws.data.name}, shipped networks, device {ws.device}"
    return f"{ws.data} with preset {ws.preset} on {ws.device}; trained networks and results in {ws.out}"


def preset_summary() -> list[dict]:
    """One row per run preset: what it trains and how long that takes. GPU hours use the official
    StyleGAN2-ADA V100 figures (published.STYLEGAN2_ADA_V100); CPU hours are measured: the shipped 64 px
    generator's and encoder's own training time (their manifests), for the preset that made them."""
    from . import pretrained as pt
    from .published import STYLEGAN2_ADA_V100

    rows = []
    for name, p in RUN_PRESETS.items():
        cfg = gan_config(name)
        speed = STYLEGAN2_ADA_V100["s_per_kimg"].get(cfg.resolution)
        row = {"preset": name, "resolution": cfg.resolution, "gan_kimg": cfg.total_kimg, "batch": cfg.batch,
               "g_channels": f"{cfg.channel_base} / {cfg.channel_max}", "encoder_steps": p["encoder"]["steps"],
               "baselines": p["baselines"],
               "v100_hours": None if speed is None else tuple(s * cfg.total_kimg / 3600 for s in speed),
               "cpu_hours": None}
        if name == "cpu64" and pt.pretrained_gan_available() and pt.pretrained_encoder_available():
            gan, enc = pt.read_manifest(), pt.read_encoder_manifest()
            row["cpu_hours"] = (gan["training"]["step_seconds"] + enc["training"]["step_seconds"]) / 3600
        rows.append(row)
    return rows


def banner(ws: Workspace) -> str:
    """Markdown for the top of a chapter run under the switch ('' for the phantom book)."""
    if ws.default:
        return ""
    return (f"**This chapter ran on `{ws.data}` (preset `{ws.preset}`, device `{ws.device}`; trained networks and "
            f"results in `{ws.out}`).** Every figure, table and number printed by a cell comes from that data. "
            f"The prose was written for the phantom book and describes its data and results; where it "
            f"quotes a number, the number is computed on your data.")


__all__ = ["banner", "preset_summary", "kinds_in", "RUN_PRESETS", "Workspace", "GanRecord", "workspace", "run_pipeline",
           "ensure_gan", "ensure_encoder", "ensure_score", "ensure_benchmark", "method_options", "shipped_matches",
           "step_done", "describe"]
