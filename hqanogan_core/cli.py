"""Command line: `python -m hqanogan_core <command> ...` (the interface scripts rely on).

    phantom    --out DIR [--size 64] [--n-train N] [--n-test N] [--n-valid N] [--seed S] [--severity X]
    convert    {rsna,chexpert,zhanglab,oct2017} --src DIR --out DIR [--size 256] ...
    train-gan  --data DIR --out RUN [--preset cpu64] [--kimg K] [--resume] [--init-from GAN]   (torchrun: multi-GPU)
    train-encoder --run RUN --data DIR [--steps N] [--out DIR] [--resume] [--init-from ENC]
    train-baseline METHOD --data DIR --out RUN [--steps N] [--preset cpu|gpu] [--resume]
    export-baseline METHOD RUN OUT --data DIR --command "..."
    ablate-encoder --run GAN --data DIR --out DIR [--steps 400]
    compare-inversions --data DIR --out DIR [--steps 300]
    score-study --data DIR --out DIR [--valid DIR] [--run ENC]   (chapter 4: which score, chosen on validation)
    ship-refined --out data/pretrained/refined64 [--data DIR]   (the book's images' refined codes)
    explain    IMAGE.png --out report.html [--run RUN] [--data DIR]
    pipeline   --data DIR --out RUN [--preset cpu64|paper256|paper512|tiny] [--methods a,b] [--resume]
    score      --data DIR --out SCORES.csv [--method hqanogan] [--run RUN] [--maps DIR] [--encoder ENC] [--split test]
    benchmark  --data DIR --methods a,b,c [--out DIR] [--json] [--set METHOD.OPTION=VALUE ...]
               (methods: mean, iforest, pca, ae, vae, anogan, fanogan, ganomaly, hqanogan)
"""
from __future__ import annotations

import argparse
import json
import sys


def cmd_compare_inversions(args) -> int:
    from hqanogan_core.ablation import inversion_images, inversion_study
    from hqanogan_core.nets.perceptual import PerceptualDistance
    from hqanogan_core.pipeline import load_pipeline

    pipe = load_pipeline(args.run)
    images = inversion_images(args.data, pipe.resolution)
    study = inversion_study(pipe.G, pipe.E, PerceptualDistance(), images["normals"], images["abnormal"],
                            steps=args.steps, seed=args.seed, shipped=args.out, out=args.out)
    for name, r in study["compare"].items():
        print(f"{name}: PSNR {r['metrics']['psnr'].mean():.2f} dB, {r['seconds_per_image']:.4f} s / image")
    print(f"written: {args.out}/results.json")
    return 0


def cmd_score_study(args) -> int:
    import sys

    from hqanogan_core.benchmark import device_description
    from hqanogan_core.nets.perceptual import PerceptualDistance
    from hqanogan_core.pipeline import load_pipeline
    from hqanogan_core.score_study import (load_study, reselect_study, run_score_study, save_study, study_key,
                                           study_splits)

    pipe = load_pipeline(args.run)
    percep = PerceptualDistance()
    splits = study_splits(args.data, args.valid)
    key = study_key(pipe, splits, percep.backend_name)
    command = "python -m hqanogan_core " + " ".join(sys.argv[1:])
    found = None if args.remeasure else load_study(args.out, key, measured_only=True)
    if found is not None:     # same networks, data and candidates: only the selection is redone
        print(f"{args.out} holds these measurements: re-selecting under today's rule (--remeasure to redo them)")
        result = reselect_study(found, splits, seed=args.seed, n_boot=args.n_boot)
        measured_by = (found["command"] or "").split("   # re-selected")[0]
        command += f"   # re-selected from the stored columns of: {measured_by}"
    else:
        result = run_score_study(pipe, splits, percep, seed=args.seed, n_boot=args.n_boot)
    save_study(args.out, result, key, command, device_description())
    chosen = result["report"]["chosen"]
    print(f"chosen on validation: {chosen['describe']} (validation AUROC {chosen['valid_auroc']:.3f}, "
          f"test {chosen['test']['value']:.3f} [{chosen['test']['ci95'][0]:.3f}, {chosen['test']['ci95'][1]:.3f}])")
    print(f"written: {args.out}/results.json")
    return 0


def cmd_ship_refined(args) -> int:
    from pathlib import Path

    import torch

    from hqanogan_core.checkpoint import atomic_write_json
    from hqanogan_core.data.default import phantom_dataset
    from hqanogan_core.data.splits import load_split, to_model_input
    from hqanogan_core.methods.hqanogan import DEFAULT_SCORE
    from hqanogan_core.paths import cache_dir
    from hqanogan_core.pipeline import load_pipeline
    from hqanogan_core.provenance import code_revision
    from hqanogan_core.scores import refine_namespace
    from hqanogan_core.ship import keep_refined_codes

    pipe = load_pipeline(args.run)
    config = DEFAULT_SCORE if args.steps is None else DEFAULT_SCORE.replace(refine_steps=args.steps)
    name = f"refined-{refine_namespace(pipe.G, pipe.E, config)}.safetensors"
    source = Path(args.cache) if args.cache else cache_dir() / "scorers"
    if not (source / name).is_file():
        raise FileNotFoundError(f"no refined codes for these networks and settings at {source / name}: run the "
                                f"benchmark (or score-study) with them first")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else phantom_dataset(pipe.resolution)
    images = torch.cat([to_model_input(load_split(data, split).images, pipe.resolution)
                        for split in ("train", "valid", "test")])
    kept = keep_refined_codes(source / name, out / name, images)
    for stale in out.glob("refined-*.safetensors"):        # the manifest names one file: the default's
        if stale.name != name:
            stale.unlink()
    atomic_write_json(out / "manifest.json", {
        "what": "encoder-initialised refinements (project.refine) of the images the book restores, by image "
                "content; a cache: every code is recomputed the same way when missing",
        "file": name, "n_codes": kept, "images_of": data.name, "networks": pipe.info.get("encoder"),
        "settings": {k: getattr(config, k) for k in ("refine_steps", "refine_lr", "refine_prior", "refine_loss")},
        "command": "python -m hqanogan_core " + " ".join(sys.argv[1:]), "code": code_revision()})
    print(f"{kept} refined codes (the images of {data}) -> {out / name}")
    return 0


def cmd_explain(args) -> int:
    from pathlib import Path

    from hqanogan_core.report import explain

    if not Path(args.image).exists():
        raise FileNotFoundError(f"{args.image} does not exist")
    if args.run is not None and not Path(args.run).exists():
        raise FileNotFoundError(f"{args.run} does not exist (--run)")
    facts = explain(args.image, args.out, run=args.run, data=args.data)
    print(f"{'ABNORMAL' if facts['abnormal'] else 'normal'}: score {facts['score']:.3f} "
          f"(above {facts['percentile']:.1f} % of held-out normals; threshold {facts['threshold']:.3f} from valid)")
    print(f"report: {Path(args.out).resolve()}")
    return 0


def cmd_phantom(args) -> int:
    from hqanogan_core.data.phantom import PhantomConfig, write_phantom_dataset

    if args.layout == "rsna":       # the raw RSNA format, for trying `convert rsna` and the own-data path
        from hqanogan_core.data.phantom_rsna import write_phantom_rsna

        counts = write_phantom_rsna(args.out, n_normal=args.n_train, n_abnormal=args.n_test, size=args.size,
                                    seed=args.seed)
        print(f"wrote {counts['patients']} RSNA-format DICOMs ({counts['pneumonia']} pneumonia) to {args.out}")
        return 0

    config = PhantomConfig(size=args.size, severity=args.severity)
    summary = write_phantom_dataset(
        args.out,
        n_train=args.n_train,
        n_test=args.n_test,
        n_valid=args.n_valid,
        seed=args.seed,
        config=config,
        workers=args.workers,
    )
    n = args.n_train + args.n_test + args.n_valid
    print(f"wrote {n} images ({args.size} px) to {args.out} in {summary['seconds']:.1f} s")
    return 0


def cmd_convert(args) -> int:
    from hqanogan_core.data.convert import CONVERTERS

    summary = CONVERTERS[args.dataset](
        args.src,
        args.out,
        size=args.size,
        seed=args.seed,
        equalize=args.equalize,
        limit=args.limit,
        valid_fraction=args.valid_fraction,
        overwrite=args.overwrite,
        skip_bad=args.skip_bad,
    )
    brief = {k: v for k, v in summary.items() if k != "files"}  # the per-file map goes to convert.json only
    print(json.dumps(brief, indent=2, default=str))
    return 0


def cmd_train_gan(args) -> int:
    from hqanogan_core.train.gan import train_gan
    from hqanogan_core.presets import get_preset

    overrides = dict(_parse_settings(args.set))     # any GanTrainConfig field; the named flags win
    renamed = {"kimg": "total_kimg"}
    for field in ("kimg", "seed", "batch", "device", "amp", "snapshot_kimg"):
        value = getattr(args, field)
        if value is not None:
            overrides[renamed.get(field, field)] = value
    if args.compile:
        overrides["compile"] = True
    config = get_preset(args.preset, **overrides)
    summary = train_gan(args.data, args.out, config, resume=args.resume, progress=not args.no_progress,
                        init_from=args.init_from)
    if summary:  # rank 0 only under torchrun
        print(json.dumps({k: v for k, v in summary.items() if k != "trainer"}, indent=2, default=str))
    return 0


def cmd_train_encoder(args) -> int:
    import dataclasses
    from pathlib import Path

    from hqanogan_core.pretrained import load_pretrained_gan, pretrained_gan_available
    from hqanogan_core.train.encoder import EncoderTrainConfig, train_encoder

    run = Path(args.run)
    if pretrained_gan_available(run):  # a shipped folder: gan.safetensors + manifest.json
        gan = lambda: load_pretrained_gan(run)[:2]  # noqa: E731
    elif (run / "latest.safetensors").is_file() or run.suffix == ".safetensors":
        gan = run  # a train-gan run folder or checkpoint
    else:
        raise FileNotFoundError(f"{run} holds no generator: expected gan.safetensors + manifest.json "
                                f"(a pretrained folder) or latest.safetensors (a train-gan run)")
    overrides = dict(_parse_settings(args.set))     # any EncoderTrainConfig field; the named flags win
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(EncoderTrainConfig)})
    if unknown:
        raise ValueError(f"unknown EncoderTrainConfig fields: {unknown}")
    overrides.update({k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("seed", args.seed),
                                        ("device", args.device), ("perceptual", args.perceptual),
                                        ("lr", args.lr)) if v is not None})
    config = EncoderTrainConfig.from_dict(overrides)   # JSON lists -> tuples (blocks, betas)
    out = Path(args.out) if args.out else (run / "encoder")
    # gan_path is recorded in the checkpoint: `score --encoder OUT` finds G by it
    summary = train_encoder(gan, args.data, out, config, resume=args.resume, progress=not args.no_progress,
                            gan_path=run, init_from=args.init_from)
    print(json.dumps({k: v for k, v in summary.items() if isinstance(v, (str, int, float, dict, list))},
                     indent=2, default=str))
    return 0


def cmd_ablate_encoder(args) -> int:
    import shlex
    from pathlib import Path

    from hqanogan_core.ablation import ENCODER_VARIANTS, ablation_key, run_encoder_ablation, save_ablation
    from hqanogan_core.nets.perceptual import PerceptualDistance
    from hqanogan_core.pipeline import load_gan

    G, D, _ = load_gan(Path(args.run))
    percep = PerceptualDistance()
    work = Path(args.work) if args.work else Path(args.out) / "runs"
    results = run_encoder_ablation(G, D, args.data, work, steps=args.steps, batch=args.batch, n_fit=args.n_fit,
                                   seed=args.seed, percep=percep, progress=not args.no_progress)
    key = ablation_key(G, args.data, args.steps, args.batch, ENCODER_VARIANTS, "valid", args.n_fit,
                       args.seed, percep.backend_name)
    command = "python -m hqanogan_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(f"wrote {save_ablation(args.out, results, key, command)}")
    return 0


def cmd_train_baseline(args) -> int:
    from hqanogan_core.train.baselines import baseline_config, train_baseline

    overrides = dict(_parse_settings(args.set))
    for name in ("steps", "batch", "seed", "device"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if "resolution" not in overrides:               # train at the data's own size unless told otherwise
        overrides["resolution"] = _data_resolution(args.data)
    config = baseline_config(args.method, args.preset, **overrides)
    summary = train_baseline(args.method, args.data, args.out, config, resume=args.resume,
                             progress=not args.no_progress)
    print(json.dumps({k: v for k, v in summary.items() if k != "trainer"}, indent=2, default=str))
    return 0


def _data_resolution(data) -> int:
    """Side of the first training image of an MVTec-layout folder (errors name the folder or file)."""
    from hqanogan_core.data.folder import read_grayscale, scan_split

    samples = scan_split(data, "train")
    if not samples:
        raise FileNotFoundError(f"no training images under {data}/train/good")
    h, w = read_grayscale(samples[0].path).shape
    if h != w:
        raise ValueError(f"{samples[0].path} is {h} x {w}; baselines need square images (pass --set resolution=N)")
    return h


def _parse_settings(items) -> list[tuple[str, object]]:
    """["a=1", "b=x"] -> [("a", 1), ("b", "x")]: values parsed as JSON when they are JSON, else strings."""
    out = []
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out.append((key.strip(), json.loads(value)))
        except json.JSONDecodeError:
            out.append((key.strip(), value))
    return out


def method_options(settings, methods) -> dict:
    """["ae.steps=50", "hqanogan.run=DIR"] -> {"ae": {"steps": 50}, "hqanogan": {"run": "DIR"}}."""
    options: dict[str, dict] = {}
    for key, value in _parse_settings(settings):
        if "." not in key:
            raise ValueError(f"--set expects METHOD.OPTION=VALUE, got {key!r}")
        name, option = key.split(".", 1)
        if name not in methods:
            raise ValueError(f"--set {key}: {name!r} is not among the methods ({', '.join(methods)})")
        options.setdefault(name, {})[option] = value
    return options


def cmd_score(args) -> int:
    from pathlib import Path

    from hqanogan_core.benchmark import score_split

    options = method_options(args.set, [args.method]).get(args.method, {})
    if args.run:
        options["run"] = args.run
    if args.encoder:
        options["encoder"] = args.encoder
    if args.held_out is not None:
        options["score"] = {**options.get("score", {}), "held_out_fraction": args.held_out}
    if args.device:
        options["device"] = args.device
    summary = score_split(args.data, args.out, method=args.method, options=options, maps_dir=args.maps,
                          split=args.split, seed=args.seed)
    print(f"scored {summary['n']} images of {Path(args.data) / args.split} with {args.method} -> {args.out}"
          + (f" (maps in {args.maps})" if args.maps else "")
          + (f"; AUROC {summary['auroc']:.3f}" if summary.get("auroc") is not None else ""))
    return 0


def cmd_benchmark(args) -> int:
    from hqanogan_core.benchmark import run_benchmark

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if methods == ["all"]:
        from hqanogan_core.methods import DETECTORS

        methods = list(DETECTORS)
    options = method_options(args.set, methods)
    if args.run:
        options.setdefault("hqanogan", {})["run"] = args.run
    report = run_benchmark(args.data, methods, out=args.out, size=args.size, n_boot=args.n_boot, seed=args.seed,
                           method_options=options or None, cache=args.cache)
    if args.json:
        print(json.dumps(report))
    else:
        for name, r in report["methods"].items():
            a = r["image"]["auroc"]
            print(f"{name:10s} AUROC {a['value']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]")
    return 0


def cmd_pipeline(args) -> int:
    from hqanogan_core.workflow import run_pipeline

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    folders = run_pipeline(args.data, args.out, preset=args.preset, methods=methods, device=args.device,
                           resume=args.resume, progress=not args.no_progress)
    print(json.dumps({k: str(v) for k, v in folders.items()}, indent=2))
    return 0


def cmd_export_baseline(args) -> int:
    from hqanogan_core.ship import export_baseline

    m = export_baseline(args.run, args.out, args.method, data=args.data, command=args.command, note=args.note)
    print(json.dumps({"out": args.out, "total_bytes": m["total_bytes"], "validation": m["validation"]}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from hqanogan_core.train.baselines import RECIPES

    parser = argparse.ArgumentParser(prog="python -m hqanogan_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantom", help="write the chest-radiograph phantom in the MVTec AD layout")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--n-valid", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--severity", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--layout", choices=["mvtec", "rsna"], default="mvtec",
                   help="rsna: DICOMs + labels CSV as RSNA distributes them (n-train normal, n-test abnormal "
                        "patients), input for `convert rsna`")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("convert", help="convert a public dataset to the MVTec AD layout")
    p.add_argument("dataset", choices=["rsna", "chexpert", "zhanglab", "oct2017"])
    p.add_argument("--src", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--equalize", choices=["none", "he", "bbhe"], default="none")
    p.add_argument("--limit", type=int, default=None, help="at most N images per class (quick runs)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--overwrite", action="store_true", help="replace an existing converted dataset")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable image files (listed under "
                                                           "'skipped' in convert.json) instead of stopping")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train-gan", help="train StyleGAN2-ADA on DATA/train/good (resumable)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.jsonl, sample grids")
    p.add_argument("--preset", default="cpu64", help="cpu32, cpu64, paper256, paper512")
    p.add_argument("--kimg", type=float, default=None, help="total training length in thousands of images")
    p.add_argument("--resume", action="store_true", help="continue from RUN/latest.safetensors")
    p.add_argument("--init-from", default=None, help="a shipped GAN folder to continue training (fresh optimisers) "
                   "when RUN has no checkpoint yet")
    p.add_argument("--snapshot-kimg", type=float, default=None, help="checkpoint + sample grid interval")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default=None, help="CUDA only")
    p.add_argument("--compile", action="store_true", help="torch.compile the main-phase nets (CUDA only)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other GanTrainConfig field, e.g. channel_max=32 (tiny nets for smoke runs and tests)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_gan)

    p = sub.add_parser("train-encoder", help="train a pSp encoder into W+ of a frozen generator")
    p.add_argument("--run", required=True, help="pretrained folder (gan.safetensors) or train-gan run")
    p.add_argument("--data", required=True, help="MVTec-layout folder; train/good is used")
    p.add_argument("--out", default=None, help="default: RUN/encoder")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--perceptual", choices=["auto", "lpips", "stlpips"], default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    p.add_argument("--init-from", default=None, help="a shipped encoder folder to continue (fresh optimiser) when "
                   "OUT has no checkpoint yet, e.g. for a generator continued with train-gan --init-from; "
                   "--steps counts the shipped steps too")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other EncoderTrainConfig field, e.g. width=8, blocks=[1,1,1,1], snapshot_every=5")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_encoder)

    p = sub.add_parser("train-baseline", help="train a generative baseline on DATA/train/good (resumable)")
    p.add_argument("method", choices=list(RECIPES))
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="run folder: checkpoint.safetensors, log.jsonl")
    p.add_argument("--preset", choices=["cpu", "gpu"], default="cpu", help="cpu budget, or the paper's scale")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other config field, e.g. width=32")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_baseline)

    p = sub.add_parser("ablate-encoder", help="train every encoder variant briefly, judge on valid, write results.json")
    p.add_argument("--run", required=True, help="pretrained GAN folder or train-gan run (frozen)")
    p.add_argument("--data", required=True, help="MVTec-layout folder with train/ and valid/")
    p.add_argument("--out", required=True, help="folder for results.json (e.g. data/pretrained/ablation_encoder64)")
    p.add_argument("--work", default=None, help="where the variants' checkpoints go (default OUT/runs)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--n-fit", type=int, default=1000, help="training normals the scorer is fitted on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_ablate_encoder)

    p = sub.add_parser("compare-inversions", help="encoder vs 300-step W+ projector (chapter 3), write results.json")
    p.add_argument("--data", required=True, help="MVTec-layout folder with test/ and valid/")
    p.add_argument("--out", required=True, help="folder for results.json (e.g. data/pretrained/inversion64)")
    p.add_argument("--run", default=None, help="encoder folder or GAN run (default data/pretrained/encoder64)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_compare_inversions)

    p = sub.add_parser("score-study", help="every score term, aggregation and restoration on validation; the "
                       "chosen score and the semi-supervised curve on test (chapter 4), write results.json")
    p.add_argument("--data", required=True, help="MVTec-layout folder with train/, valid/ and test/")
    p.add_argument("--out", required=True, help="folder for results.json (e.g. data/pretrained/score_study64)")
    p.add_argument("--valid", default=None, help="folder whose valid/ split makes the choices (default: DATA's; "
                   "the phantom book uses the larger selection phantom, data/cache/phantom64_select)")
    p.add_argument("--run", default=None, help="encoder folder or GAN run (default data/pretrained/encoder64)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--remeasure", action="store_true", help="measure again even when OUT holds a study of these "
                   "networks and data (by default only the selection is redone then: seconds, not an hour)")
    p.set_defaults(func=cmd_score_study)

    p = sub.add_parser("ship-refined", help="copy the refined codes of the default score from the cache into a "
                       "shipped folder (data/pretrained/refined64) with a manifest")
    p.add_argument("--out", required=True)
    p.add_argument("--run", default=None, help="encoder folder or GAN run (default data/pretrained/encoder64)")
    p.add_argument("--cache", default=None, help="where the codes are (default: the cache's scorers/ folder)")
    p.add_argument("--steps", type=int, default=None, help="refine steps (default: the default score's)")
    p.add_argument("--data", default=None, help="ship the codes of this folder's images only (default: the book's "
                   "phantom); the cache's others, e.g. a study's selection split, stay in the cache")
    p.set_defaults(func=cmd_ship_refined)

    p = sub.add_parser("explain", help="one image -> a self-contained HTML report (score, verdict, map, slots)")
    p.add_argument("image", help="a grayscale PNG at the model's resolution")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--run", default=None, help="encoder folder or GAN run (default data/pretrained/encoder64)")
    p.add_argument("--data", default=None, help="MVTec-layout folder the model is fitted on (default: the phantom)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("benchmark", help="fit and score methods with one harness, bootstrap CIs")
    p.add_argument("--data", required=True)
    p.add_argument("--methods", default="mean,iforest,pca", help="comma-separated names, or 'all'")
    p.add_argument("--out", default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    p.add_argument("--run", default=None,
                   help="hqanogan: encoder folder or GAN run (default data/pretrained/encoder64)")
    p.add_argument("--set", action="append", metavar="METHOD.OPTION=VALUE",
                   help="an option of one method, e.g. ae.run=RUN, fanogan.steps=200, anogan.test_subset=null")
    p.add_argument("--cache", default=None, help="keep each method's result in CACHE/<method>/ and reuse it when "
                                                 "method, options, images and weights match")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("pipeline", help="train-gan -> train-encoder -> score -> benchmark, each step resumable")
    p.add_argument("--data", required=True, help="MVTec-layout folder (e.g. from `convert`)")
    p.add_argument("--out", required=True, help="run folder: gan/, encoder/, score/, benchmark/")
    p.add_argument("--preset", default="cpu64", help="cpu64, paper256, paper512, tiny (hqanogan_core.workflow)")
    p.add_argument("--methods", default=None, help="benchmark methods, comma-separated "
                                                   "(default pca,ae,fanogan,padim,patchcore,hqanogan)")
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue unfinished steps from their checkpoints")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("export-baseline", help="ship a train-baseline run: weights, manifest, validation AUROC")
    p.add_argument("method", choices=list(RECIPES))
    p.add_argument("run", help="train-baseline run folder")
    p.add_argument("out", help="e.g. data/pretrained/ae")
    p.add_argument("--data", required=True, help="the MVTec-layout folder it was trained on (valid/ is scored)")
    p.add_argument("--command", required=True, help="the exact command that trained the run")
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_export_baseline)

    p = sub.add_parser("score", help="one method's scores (and maps) for one split of a folder (default hqanogan)")
    p.add_argument("--method", default="hqanogan", help="any registered method (see benchmark --methods)")
    p.add_argument("--set", action="append", metavar="METHOD.OPTION=VALUE", help="an option of the method")
    p.add_argument("--run", default=None, help="shipped encoder folder, or a GAN folder/run (then --encoder or "
                                               "RUN/encoder); default data/pretrained/encoder64")
    p.add_argument("--encoder", default=None, help="encoder folder or train-encoder checkpoint; without --run "
                                                   "its generator is the one its manifest / checkpoint names")
    p.add_argument("--data", required=True, help="MVTec-layout folder: fit on train/good, score --split")
    p.add_argument("--split", default="test")
    p.add_argument("--out", required=True, help="CSV: one row per image, every score term")
    p.add_argument("--maps", default=None, help="folder for anomaly maps (16-bit PNG, see maps.json)")
    p.add_argument("--held-out", type=float, default=None,
                   help="hqanogan: fraction of train normals for standardisation")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
