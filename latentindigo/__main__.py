"""Command line: `python -m latentindigo COMMAND ...` (also installed as `latentindigo`).

Errors a user can fix (bad files, bad parameters) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentindigo.errors import UserError


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x384, not {text!r}") from None
    return width, height


def _degrade(args: argparse.Namespace) -> None:
    from latentindigo.degradations import Degradation, degrade
    from latentindigo.imageio import load_image, save_png, to_image, to_tensor

    if args.scale < 1 or args.blur < 0 or args.noise < 0 or not (args.jpeg is None or 1 <= args.jpeg <= 100):
        raise UserError("need --scale >= 1, --blur >= 0, --noise >= 0 and --jpeg between 1 and 100")
    x = to_tensor(load_image(args.input))
    d = Degradation(scale=args.scale, blur=args.blur, noise=args.noise, jpeg=args.jpeg, seed=args.seed,
                    resize_mode=args.resize)
    y = degrade(x, d)
    save_png(to_image(y), args.output)
    print(f"{args.output}: {y.shape[-1]}x{y.shape[-2]}")


def _restore(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from latentindigo import recipe
    from latentindigo.imageio import load_image, save_png
    from latentindigo.sampler import Done, Step, load_pixel_models, restore
    from latentindigo.settings import DIFFUSION_METHODS

    saved = None
    if args.recipe_from:
        # the recipe decides method, prior, every sampler setting, seed and size
        # (--method and --realism: which of a comparison's results)
        saved = recipe.read_recipe(args.recipe_from, method=args.method, realism=args.realism)
        settings = recipe.settings_of(saved)
        args.prior = saved["prior"]["spec"] if saved.get("prior") else args.prior
    else:
        settings = settings_from_args(args)
    image = load_image(args.input)
    settings.check(image.width, image.height)
    prior = None
    if settings.method in DIFFUSION_METHODS:
        prior = load_prior_for(args)
    pixel = load_pixel_models(realistic=args.first_stage_weights)
    if settings.uses_realistic:
        pixel.realistic_model()  # a missing package or a bad weights file: one line before the progress bar
    if saved and (changed := recipe.differences(saved, image, prior, pixel)):
        print(f"warning: {args.recipe_from.name} may not be reproduced exactly: {'; '.join(changed)} "
              "differ from its recipe", file=sys.stderr)
    bar = tqdm(total=settings.steps, desc=settings.method, file=sys.stderr, disable=args.quiet)
    for event in restore(image, settings, prior, pixel):
        if isinstance(event, Done):
            bar.close()
            save_png(event.image, args.output, text=recipe.png_text(recipe.recipe(event, image, prior, pixel)))
            print(f"{args.output}: {event.image.width}x{event.image.height} in {event.seconds:.1f} s "
                  f"(estimated {event.estimate})")
            if args.verbose and event.summary:
                print(event.summary)
            if args.maps:
                from latentindigo.maps import maps, save_maps

                m = maps(event)
                written = save_maps(m, event.image, args.maps, args.output.stem)
                print(f"{args.maps}: {', '.join(p.name for p in written.values())} (consistency with the input "
                      f"{m.consistency_psnr:.1f} dB)")
        elif isinstance(event, Step):
            bar.n = event.step
            bar.set_postfix(phase=event.phase, consistency=f"{event.consistency:.4f}")


def _restore_dir(args: argparse.Namespace) -> None:
    """Every image of a folder; run it under `accelerate launch` to split the files across processes/GPUs."""
    from latentindigo.batch import restore_dir

    summary = restore_dir(args.input_dir, args.output_dir, settings_from_args(args), prior_spec=args.prior,
                          recursive=args.recursive, device=args.device, quiet=args.quiet,
                          first_stage_weights=args.first_stage_weights)
    if summary.exit_status:
        sys.exit(summary.exit_status)  # 0: all restored or already done, 1: some images failed, 2: usage error


def settings_from_args(args: argparse.Namespace):
    """The options given, and for the sampler options not given, the prior's tuned settings."""
    from latentindigo.settings import TUNABLE, Settings, settings_for

    if args.size and args.scale:
        raise UserError("give --size or --scale, not both")
    given = {name: getattr(args, name) for name in TUNABLE + ("prompt", "negative_prompt")
             if getattr(args, name, None) is not None}
    return settings_for(args.prior, method=args.method or Settings().method, seed=args.seed, size=args.size,
                        scale=args.scale, **given)


def load_prior_for(args: argparse.Namespace):
    import os

    from latentindigo.priors import load_prior

    if getattr(args, "sd21_repo", None):
        os.environ["LATENTINDIGO_SD21_REPO"] = args.sd21_repo
    if getattr(args, "sd21_revision", None):
        os.environ["LATENTINDIGO_SD21_REVISION"] = args.sd21_revision
    prior = load_prior(args.prior, device=args.device, offload=getattr(args, "offload", False),
                       compile=getattr(args, "compile", False), calibrate=getattr(args, "calibrate", None),
                       progress=calibration_bar())
    if prior.notice:
        print(f"note: {prior.notice}", file=sys.stderr)
    return prior


def calibration_bar():
    """A progress bar for a calibration that loading a prior starts (shown only if one starts)."""
    from tqdm import tqdm

    bar = None

    def progress(step: int, total: int) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total, desc="calibrating the LatentINN (first use of this VAE)", file=sys.stderr)
        bar.update(step - bar.n)
        if step == total:
            bar.close()

    return progress


def add_restore_options(p: argparse.ArgumentParser) -> None:
    """The sampler options default to None: the prior's tuned settings (`sampler_settings.json` in its folder),
    else the library's."""
    from latentindigo.settings import LATENT_REGULARISERS, METHODS, Settings, settings_for

    d = Settings()
    p.epilog = ("Sampler options left out take the prior's tuned settings (sampler_settings.json in its folder; the "
                "bundled mini has one), else the library defaults shown in parentheses.")
    p.add_argument("--method", choices=METHODS,
                   help=f"latent/pixel: LatentINDIGO; faithful, realistic, first-stage (the start at --realism): the "
                        f"first stages; others: baselines ({d.method}); with --recipe-from a comparison PNG: the "
                        "method of it to replay")
    p.add_argument("--prior", default="mini", help="mini (bundled), sd21, a diffusers folder or hub id[@revision], "
                   "tiny-random or sd21-random")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--sd21-repo", help="hub repo of the sd21 spec (env LATENTINDIGO_SD21_REPO)")
    p.add_argument("--sd21-revision", help="commit of the sd21 spec (env LATENTINDIGO_SD21_REVISION)")
    p.add_argument("--offload", action="store_true", help="CUDA: keep models on the CPU until used (less memory)")
    p.add_argument("--compile", action="store_true", help="torch.compile the denoiser")
    p.add_argument("--prompt", help="text-conditioned priors: the prompt (default: a neutral quality prompt)")
    p.add_argument("--negative-prompt", help="text-conditioned priors: the negative prompt")
    p.add_argument("--cfg", type=float, dest="cfg_scale", metavar="CFG",
                   help=f"classifier-free guidance scale ({d.cfg_scale:g}: off)")
    p.add_argument("--steps", type=int, help=f"denoising steps ({d.steps})")
    p.add_argument("--guidance", type=float, help=f"guidance strength lambda (0-2; {d.guidance:g})")
    p.add_argument("--start", type=float, help=f"start strength: noise level of the start, in (0, 1] ({d.start:g})")
    p.add_argument("--size", type=_size, help="output WIDTHxHEIGHT")
    p.add_argument("--scale", type=float, help="output / input size (default 4)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-refine", action="store_false", dest="refine", default=None,
                   help="switch off test-time INN refinement")
    p.add_argument("--refine-lr", type=float, help=f"({d.refine_lr:g})")
    p.add_argument("--reg-every", type=int, help=f"regularise every N steps (0: off; {d.reg_every})")
    p.add_argument("--reg-strength", type=float, help=f"({d.reg_strength:g})")
    p.add_argument("--latent-reg", choices=LATENT_REGULARISERS,
                   help=f"LatentINN regularisation: spread matching in latent space (free) or projection through "
                        f"the VAE (a decode and an encode each time; {d.latent_reg})")
    p.add_argument("--eta", type=float, help=f"fresh noise per step: 0 deterministic DDIM, 1 DDPM ({d.eta:g})")
    p.add_argument("--colour-fix", action=argparse.BooleanOptionalAction, default=None,
                   help=f"wavelet colour fix towards the first-stage restorer's estimate ({d.colour_fix})")
    p.add_argument("--colour-fix-levels", type=int, metavar="N",
                   help="the colour fix keeps the N finest wavelet bands from the diffusion, the rest from the "
                        f"first stage, 1-6 ({d.colour_fix_levels})")
    p.add_argument("--start-detail-levels", type=int, metavar="N",
                   help="the result keeps the N finest wavelet bands of its start, the rest changes with the "
                        f"diffusion, 0-6 ({d.start_detail_levels}; the bundled mini: "
                        f"{settings_for('mini').start_detail_levels})")
    p.add_argument("--realism", type=float, metavar="R",
                   help="fidelity-realism control, 0-1: 0 starts from the faithful restorer, 1 from Real-ESRGAN's "
                        f"detail on the restorer's coarse content ({d.realism:g}; the bundled mini: "
                        f"{settings_for('mini').realism:g}); with --recipe-from a realism sweep's comparison PNG: "
                        "the result of it to replay")
    p.add_argument("--first-stage-weights", type=Path, metavar="FILE",
                   help="your own ESRGAN-family model (.safetensors, or a .pth state dict, read without unpickling "
                        "objects) as the realistic first stage instead of Real-ESRGAN x4plus")
    p.add_argument("--early-stop", type=float, metavar="LEVELS",
                   help="stop when a step moves the output by less than this RMS, in 8-bit grey levels; when the "
                        "whole diffusion moves it by less, the result is its start (0: every step; "
                        f"{d.early_stop:g}; the bundled mini: {settings_for('mini').early_stop:g})")
    p.add_argument("--no-early-stop", action="store_const", const=0.0, dest="early_stop",
                   help="run every step (--early-stop 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true",
                   help="also print what the diffusion changed (steps taken, RMS change from its start, share of "
                        "pixels moved)")


def _evaluate(args: argparse.Namespace) -> None:
    import json

    from tqdm import tqdm

    from latentindigo.evaluate import evaluate, markdown, pairs
    from latentindigo.sampler import load_pixel_models
    from latentindigo.settings import DIFFUSION_METHODS

    settings = settings_from_args(args)
    prior = load_prior_for(args) if set(args.methods) & set(DIFFUSION_METHODS) else None
    bar = tqdm(total=len(pairs(args.gt, args.lq)) * len(args.methods), file=sys.stderr, disable=args.quiet)
    table = evaluate(args.gt, args.lq, prior, tuple(args.methods), settings,
                     pixel=load_pixel_models(realistic=args.first_stage_weights),
                     progress=lambda method: (bar.set_description(method), bar.update()))
    bar.close()
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


def _train(args: argparse.Namespace) -> None:
    import shutil

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.what == "vae":
        from latentindigo.training.autoencoder import train_vae

        train_vae(args.data, args.out, factor=args.factor, steps=args.steps, batch=args.batch, crop=args.crop,
                  lr=args.lr, seed=args.seed, every=args.every)
    elif args.what == "decoder":
        from latentindigo.training.autoencoder import train_decoder

        train_decoder(args.data, args.vae, args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                      seed=args.seed, every=args.every)
        if args.export:
            shutil.copytree(args.out / "vae", args.export / "vqvae", dirs_exist_ok=True)
    elif args.what == "inn" and args.space == "pixel":
        from latentindigo.training.pixel_inn import train_pixel_inn

        train_pixel_inn(args.data, args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                        seed=args.seed, every=args.every)
    elif args.what == "inn":
        from latentindigo.priors import load_prior
        from latentindigo.sampler import load_pixel_models
        from latentindigo.training.latent_inn import train_latent_inn

        train_latent_inn(load_prior(args.prior), args.data / "train", args.out, load_pixel_models().estimator,
                         steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                         every=args.every)
    elif args.what == "restorer":
        from latentindigo.training.restorer import train_restorer

        config = {"blocks": args.blocks} if args.blocks else None
        train_restorer(args.data, args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                       seed=args.seed, every=args.every, config=config, init=args.init, zoom=tuple(args.zoom),
                       bf16=args.bf16, device=args.device, workers=args.workers)
        if args.export:
            args.export.mkdir(parents=True, exist_ok=True)
            shutil.copy(args.out / "restorer.safetensors", args.export / "restorer.safetensors")
    elif args.what == "unet":
        from latentindigo.training.denoiser import export_mini, train_unet

        train_unet(args.data, args.vae, args.out, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                   every=args.every)
        if args.export:
            export_mini(args.vae.parent, args.out, args.export)


def _calibrate(args: argparse.Namespace) -> None:
    from latentindigo.calibration import calibrate_latent_inn

    args.calibrate = False  # (this command is the calibration: not a second one while loading)
    calibrate_latent_inn(load_prior_for(args), args.data, steps=args.steps, batch=args.batch, crop=args.crop)


def build_parser() -> argparse.ArgumentParser:
    from latentindigo.evaluate import METHODS as EVALUATED_METHODS
    from latentindigo.settings import METHODS

    parser = argparse.ArgumentParser(prog="latentindigo", description="INN-guided latent diffusion restoration")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("degrade", help="degrade a clean image (blur, downscale, noise, JPEG)")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="output PNG")
    p.add_argument("--scale", type=float, default=1.0, help="downscaling factor")
    p.add_argument("--blur", type=float, default=0.0, help="Gaussian blur sigma in input pixels")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise sigma in 8-bit levels")
    p.add_argument("--jpeg", type=int, help="JPEG quality (1-100)")
    p.add_argument("--resize", choices=["bicubic", "bilinear", "area"], default="bicubic")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_degrade)

    p = commands.add_parser("restore", help="restore a low-quality image")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="output PNG (its recipe in a text chunk)")
    p.add_argument("--recipe-from", type=Path, metavar="RESULT_PNG",
                   help="rerun the recipe of a PNG this project wrote (method, prior, every setting, seed, size: "
                        "its options win over the others); warns when the version or a weight file differs. A "
                        "comparison PNG (the demo's Compare grid) holds every method's: pick one with --method (and "
                        "--realism in a realism sweep)")
    p.add_argument("--maps", type=Path, metavar="DIR",
                   help="also write the consistency map (where the result disagrees with the input) and the "
                        "invented-detail map (what diffusion added over the first-stage estimate), with overlays")
    add_restore_options(p)
    p.set_defaults(run=_restore)

    p = commands.add_parser("restore-dir", help="restore every image in a folder (resumable; accelerate launch "
                            "splits it across processes)", description="Outputs OUT_DIR/sub/name.png and "
                            "OUT_DIR/manifest.jsonl; existing outputs are skipped; failures go to "
                            "OUT_DIR/errors.jsonl. Exit status 0: all ok, 1: some images failed, 2: usage error.")
    p.add_argument("input_dir", type=Path, metavar="IN_DIR")
    p.add_argument("output_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--recursive", action="store_true", help="also restore the images in subfolders")
    add_restore_options(p)
    p.set_defaults(run=_restore_dir, device=None)  # device None: the process's accelerate device

    p = commands.add_parser("evaluate", help="PSNR, SSIM, consistency, detail and speed of each method")
    p.add_argument("--gt", type=Path, required=True, help="folder of ground-truth images")
    p.add_argument("--lq", type=Path, required=True, help="folder of low-quality images (same file names)")
    p.add_argument("--methods", nargs="+", default=list(EVALUATED_METHODS), choices=METHODS)
    p.add_argument("--json", type=Path, help="also write the table as JSON")
    add_restore_options(p)
    p.set_defaults(run=_evaluate)

    p = commands.add_parser("train", help="train the VAE, UNet, INNs or first-stage restorer of the bundled models "
                            "(CPU, resumable)")
    p.add_argument("what", choices=["vae", "decoder", "unet", "inn", "restorer"])
    p.add_argument("--vae", type=Path, help="trained VAE folder (with 'unet' and 'decoder'), e.g. runs/vae/vae")
    p.add_argument("--export", type=Path, help="with 'unet': assemble the prior folder here, e.g. assets/mini; with "
                   "'decoder': replace its VAE; with 'restorer': copy the weights into this folder, e.g. assets/restorer")
    p.add_argument("--prior", default="mini", help="prior whose VAE the LatentINN is for (with 'inn --space latent')")
    p.add_argument("--space", choices=["pixel", "latent"], default="pixel", help="which INN (with 'inn')")
    p.add_argument("--data", type=Path, default=Path("data/photos"), help="photo set (python -m scripts.build_photoset)")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, resumed if present")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--factor", type=int, choices=[4, 8], default=8, help="VAE downsampling factor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=200, help="validate and checkpoint every N steps")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--init", type=Path, help="with 'restorer': start from these weights, e.g. the shipped ones")
    p.add_argument("--blocks", type=int, nargs=3, metavar=("FULL", "HALF", "QUARTER"),
                   help="with 'restorer': residual blocks per resolution (default 1 1 11); blocks --init lacks start "
                   "as the identity")
    p.add_argument("--zoom", type=float, nargs=2, default=(0.25, 1.0), metavar=("MIN", "MAX"),
                   help="with 'restorer': crops shrink a region of crop / zoom pixels, zoom drawn in [MIN, MAX]")
    p.add_argument("--bf16", action="store_true",
                   help="with 'restorer': convolutions in bfloat16 (2.3x faster on CPUs with AVX-512 BF16)")
    p.add_argument("--device", help="with 'restorer': cpu, cuda ... (default: cuda when available)")
    p.add_argument("--workers", type=int, default=0,
                   help="with 'restorer': processes that draw and degrade the training crops (0: the training "
                   "process; a GPU needs most of the machine's cores)")
    p.set_defaults(run=_train)

    p = commands.add_parser("calibrate", help="train the LatentINN for a prior's VAE and cache it")
    p.add_argument("--prior", required=True, help="mini, tiny-random, sd21, a diffusers folder or hub id")
    p.add_argument("--device", help="default: cuda when available")
    p.add_argument("--data", type=Path, help="folder of photos (default: the calibration set in assets/)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128, help="crop side in pixels")
    p.set_defaults(run=_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
