"""The ``colorot`` command line: parse options, call the library, report.

Results go to stdout (one JSON document with ``--json``); progress, warnings
and errors go to stderr.  Exit codes: 0 success, 1 an error the user can fix,
2 a usage error, 3 a batch that finished with some files failed.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from colorot import __version__, apply as apply_mod, checkpoint
from colorot.distributions import DEFAULT_RIDGE
from colorot.errors import ColorotError, ConfigError
from colorot.models import DEFAULT_EPS
from colorot.transfer import ColorTransfer

app = typer.Typer(
    name="colorot",
    help="Colour transfer as optimal transport: learn a Brenier colour map once, apply it to folders.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)
_state = {"debug": False}


class ModelName(str, Enum):
    mmgn = "mmgn"
    cmgn = "cmgn"
    affine = "affine"


class TargetKind(str, Enum):
    gmm = "gmm"
    gaussian = "gaussian"


class LossName(str, Enum):
    kl = "kl"
    moment = "moment"


class DeviceName(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a ColorotError into a one-line message and its exit code (traceback with --debug)."""
    try:
        yield
    except ColorotError as exc:
        if _state["debug"]:
            raise
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        stderr.print("interrupted", highlight=False)
        raise typer.Exit(130) from None


def _progress() -> Progress:
    """A Rich progress bar on stderr, shown only when stderr is a terminal."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[extra]}"), console=stderr, disable=not stderr.is_terminal, transient=False,
    )


def _emit(as_json: bool, document: dict, lines: list[str]) -> None:
    """Print the result: one JSON document, or human-readable lines, on stdout."""
    if as_json:
        typer.echo(json.dumps(document, indent=2, default=str))
    else:
        for line in lines:
            typer.echo(line)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"colorot {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Colour transfer as optimal transport."""
    _state["debug"] = debug


@app.command()
def fit(
    source: Annotated[Path, typer.Argument(help="Image whose colours are to be changed.")],
    target: Annotated[Path, typer.Argument(help="Image whose colours are wanted.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint file to write.")],
    model: Annotated[ModelName, typer.Option(help="Map: M-MGN, C-MGN, or the closed-form Gaussian map.")] = ModelName.mmgn,
    target_kind: Annotated[TargetKind, typer.Option("--target", help="Target distribution.")] = TargetKind.gmm,
    components: Annotated[str, typer.Option(help="Mixture components K, or 'auto' (BIC).")] = "auto",
    loss: Annotated[LossName, typer.Option(help="kl: exact reverse KL; moment: Gaussian moment-matching KL.")] = LossName.kl,
    transport_weight: Annotated[float, typer.Option(help="λ of the added λ·E‖T(x)−x‖² (RGB units).")] = 0.0,
    steps: Annotated[int, typer.Option(help="Training steps.")] = 1500,
    lr: Annotated[float, typer.Option(help="Adam learning rate (cosine-annealed to 5%).")] = 3e-2,
    batch_size: Annotated[int, typer.Option(help="Pixels per training step.")] = 4096,
    max_pixels: Annotated[int, typer.Option(help="Source pixels sampled for training.")] = 100_000,
    ridge: Annotated[float, typer.Option(help="Variance added to every target covariance.")] = DEFAULT_RIDGE,
    eps: Annotated[float, typer.Option(help="Strong-convexity floor: Jacobian eigenvalues ≥ eps.")] = DEFAULT_EPS,
    hidden: Annotated[Optional[int], typer.Option(help="Hidden units (per module for M-MGN).")] = None,
    layers: Annotated[Optional[int], typer.Option(help="C-MGN layers.")] = None,
    modules: Annotated[Optional[int], typer.Option(help="M-MGN modules.")] = None,
    device: Annotated[DeviceName, typer.Option(help="Where to train.")] = DeviceName.auto,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1,
                                      help="Random seed (training is deterministic on CPU).")] = 0,
    max_image_pixels: Annotated[Optional[int], typer.Option(min=1, help="Raise the decompression-bomb limit (pixels).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document.")] = False,
) -> None:
    """Fit a colour map from SOURCE to TARGET and save it as a checkpoint.

    Example: colorot fit day.jpg sunset.jpg -o model.pt
    """
    with _user_errors():
        if output.exists() and not force:
            raise ColorotError(f"{output} already exists (use --force to replace it)")
        n_components: int | str = components
        if components != "auto":
            if not components.isdigit():
                raise ConfigError(f"--components must be a positive integer or 'auto', not {components!r}")
            n_components = int(components)
        estimator = ColorTransfer(
            model=model.value, target=target_kind.value, n_components=n_components, loss=loss.value,
            transport_weight=transport_weight, steps=steps, lr=lr, batch_size=batch_size,
            max_pixels=max_pixels, ridge=ridge, eps=eps, hidden=hidden, layers=layers, modules=modules,
            device=device.value, random_state=seed, max_image_pixels=max_image_pixels,
        )
        with _progress() as bar:
            task = bar.add_task("training", total=steps if model != ModelName.affine else 0, extra="")
            estimator.fit(source, target,
                          callback=lambda step, value: bar.update(task, completed=step, extra=f"loss {value:.4f}"))
        estimator.save(output, overwrite=True)
        info = estimator.train_info_
        _emit(as_json, {"checkpoint": str(output), **info,
                        "components": estimator.target_dist_.n_components},
              [f"wrote {output}: {info['model']} map, {info['target']} target "
               f"(K={estimator.target_dist_.n_components}), {info['steps']} steps, "
               f"final loss {info['final_loss'] if info['final_loss'] is not None else 'n/a (closed form)'}, "
               f"{info['fit_seconds']:.1f} s"])


@app.command("apply")
def apply_command(
    model: Annotated[Path, typer.Argument(help="Checkpoint written by 'colorot fit'.")],
    paths: Annotated[list[str], typer.Argument(help="Input images or folders, then the output file or folder "
                                               "(a trailing '/' makes it a folder).", show_default=False)],
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders of folder inputs.")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs that already exist.")] = False,
    in_place: Annotated[bool, typer.Option("--in-place", help="Allow outputs inside an input folder.")] = False,
    suffix: Annotated[Optional[str], typer.Option(help="Output format by suffix, e.g. .png (default: the input's).")] = None,
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG/WebP quality.")] = 95,
    max_image_pixels: Annotated[Optional[int], typer.Option(min=1, help="Raise the decompression-bomb limit (pixels).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document.")] = False,
) -> None:
    """Apply a fitted map to image files and folders (the tree is mirrored under the output).

    Example: colorot apply model.pt photos/ graded/
    """
    with _user_errors():
        if len(paths) < 2:
            raise ConfigError("give at least one input and an output: colorot apply MODEL INPUT... OUTPUT")
        *inputs, output = paths
        fitted = checkpoint.load(model).model
        job_plan = apply_mod.plan([Path(p) for p in inputs], output, recursive=recursive, overwrite=overwrite,
                                  in_place=in_place, suffix=suffix)
        with _progress() as bar:
            task = bar.add_task("applying", total=len(job_plan.jobs), extra="")

            def done(job: apply_mod.Job, error: str | None) -> None:
                if error is not None:
                    bar.console.print(f"[red]failed:[/] {error}", highlight=False)
                elapsed = bar.tasks[task].elapsed or 0.0
                completed = bar.tasks[task].completed + 1
                bar.update(task, completed=completed,
                           extra=f"{completed / elapsed:.1f} files/s" if elapsed else "")

            report = apply_mod.run(job_plan, fitted, on_file_done=done, quality=quality,
                                   max_pixels=max_image_pixels)
        document = {
            "written": [str(j.dst) for j in report.written],
            "skipped": [str(j.dst) for j in report.skipped],
            "failed": [{"input": str(j.src), "error": e} for j, e in report.failed],
            "seconds": round(report.seconds, 3),
        }
        lines = [f"{len(report.written)} written, {len(report.skipped)} skipped (exist; --overwrite to redo), "
                 f"{len(report.failed)} failed in {report.seconds:.1f} s"]
        lines += [f"failed: {e}" for _, e in report.failed]
        _emit(as_json, document, lines)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="Checkpoint to describe.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document.")] = False,
) -> None:
    """Describe what a checkpoint holds: map, target, training summary, version.

    Example: colorot info model.pt --json
    """
    with _user_errors():
        ckpt = checkpoint.load(model)
        document = {
            "model": ckpt.model.name,
            "model_config": ckpt.model.config,
            "parameters": checkpoint.count_parameters(ckpt.model),
            "target": ckpt.target.kind,
            "components": ckpt.target.n_components,
            "train": ckpt.train,
            "preprocess": ckpt.preprocess,
            "colorot_version": ckpt.colorot_version,
            "format_version": checkpoint.FORMAT_VERSION,
        }
        lines = [
            f"model       {ckpt.model.name} {ckpt.model.config}",
            f"parameters  {document['parameters']}",
            f"target      {ckpt.target.kind}, {ckpt.target.n_components} component(s)",
            "training    " + ", ".join(f"{k}={v}" for k, v in ckpt.train.items()
                                        if k not in ("source_sha256", "target_sha256")),
            f"source      sha256 {ckpt.train.get('source_sha256')}",
            f"target img  sha256 {ckpt.train.get('target_sha256')}",
            f"colorot     {ckpt.colorot_version} (checkpoint format {checkpoint.FORMAT_VERSION})",
        ]
        _emit(as_json, document, lines)


def main() -> None:
    """Console-script entry point."""
    app()
