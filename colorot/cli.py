"""The ``colorot`` command line: parse options, call the library, report.

Results go to stdout (one JSON document with ``--json``); progress, warnings
and errors go to stderr.  Exit codes: 0 success, 1 an error the user can fix,
2 a usage error, 3 a batch that finished with some files failed.

The modules that need torch are imported by the commands that use them, so the CLI starts
without torch, and ``colorot apply`` of a ridge map (the default) or an affine map never imports it.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.util
import inspect
import json
import locale
import math
import os
import re
import sys
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from colorot import apply as apply_mod, checkpoint, metrics, preview as preview_mod, profiles
from colorot.version import __version__
from colorot.cube import cube_text, write_cube
from colorot.defaults import DEFAULT_BATCH_SIZE, DEFAULT_EPS, DEFAULT_MAX_PIXELS, DEFAULT_SW_DIRECTIONS, usable_cpus
from colorot.atomic import check_file_output, is_any_of, is_within
from colorot.errors import (ColorotError, ConfigError, DestinationError, ImageMetadataWarning, ImageReadError,
                            ImageWriteError, OutputExistsError)
from colorot.imageio import IMAGE_SUFFIXES
from colorot.lut import bake, controls_words, interpolation_error

def _untyped_in_help(params: list) -> list:
    """``params`` with no type shown in the help where it misleads: Typer 0.29's help gives each flag
    one ("--overwrite <bool>", as if it took a value) and each repeated argument its annotation
    ("<list[str]>") beside the metavar that names it, and a bounded number "<int range>" beside
    the bounds it prints anyway ("<int> [x>=1]" reads better)."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if getattr(param, "is_flag", False) or (param.param_type_name == "argument" and param.nargs != 1):
            param.display_type_rich = lambda ctx: None
        elif not getattr(descriptor, "is_list", False) and getattr(descriptor, "is_ranged", False):
            # is_list first, as Typer's own help asks: on Python 3.10 is_ranged raises for a list option
            param.display_type_rich = lambda ctx, name=descriptor.ranged_type_name: f"<{name}>"
    return params


class _Group(typer.core.TyperGroup):
    """The command group, its flags (``--debug``, ``--version``) shown without a type."""

    def get_params(self, ctx):  # noqa: D102 (click's hook)
        return _untyped_in_help(super().get_params(ctx))


app = typer.Typer(
    cls=_Group,
    name="colorot",
    help="Colour transfer as optimal transport: learn a Brenier colour map once, apply it to folders.\n\n"
         "Examples:\n"
         "  colorot fit day.jpg sunset.jpg -o model.pt\n"
         "  colorot apply model.pt photos/ graded/\n"
         "  colorot match reference.jpg photos/ matched/",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
#: Control characters (C0 but tab and newline, DEL, C1) written as Python escapes them: text that
#: comes from files (a name, a checkpoint's record, a profile's description) must not drive the
#: terminal (an ESC sequence clears the screen or writes the clipboard); nor may the bidirectional
#: marks, embeddings, overrides and isolates reorder it (``rtl\u202eGPJ.jpg`` shown as ``rtlgpj.JPG``).
_CONTROLS = {**{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code not in (0x09, 0x0A)},
             **{code: f"\\u{code:04x}" for code in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                                    *range(0x2066, 0x206A))}}


def _visible(text: str) -> str:
    """``text`` with its control characters escaped (:data:`_CONTROLS`)."""
    return text.translate(_CONTROLS)


class _Terminal(Console):
    """Rich's console, printing text with its control characters escaped and without emoji codes
    (a file named ``x:cat:.jpg`` is not ``x🐱.jpg``)."""

    def __init__(self, **options) -> None:
        super().__init__(emoji=False, **options)

    def print(self, *objects, **options) -> None:
        super().print(*(_visible(item) if isinstance(item, str) else item for item in objects), **options)


stderr = _Terminal(stderr=True)


class _Command(typer.core.TyperCommand):
    """A command whose usage line names its arguments as the README does (``INPUT... OUTPUT``),
    without the braces Typer puts around required arguments, whose help paragraphs wrap to the
    terminal (Typer keeps a docstring's line breaks; the "Examples:" block keeps them), and whose
    help shows no type where it misleads (:func:`_untyped_in_help`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = "\n\n".join(block if block.startswith("Examples:") else " ".join(block.split("\n"))
                                     for block in inspect.cleandoc(self.help).split("\n\n"))

    def get_params(self, ctx):  # noqa: D102 (click's hook)
        return _untyped_in_help(super().get_params(ctx))

    def parse_args(self, ctx, args):  # noqa: D102 (click's hook)
        if any(not arg.strip() for arg in args):  # "$DIR" with DIR unset: typer would read a path as "."
            with _user_errors():
                raise ConfigError("an empty argument was given (an unset variable?)")
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx):  # noqa: D102 (click's hook)
        pieces = []
        for piece in super().collect_usage_pieces(ctx):
            bare = re.fullmatch(r"\{(.+)\}(\.\.\.)?", piece)
            if bare:  # a metavar that spells its own repetition ("INPUT... OUTPUT") takes no "..."
                name, dots = bare.groups()
                piece = name if (" " in name or name.endswith("...")) else name + (dots or "")
            pieces.append(piece)
        return pieces
_CPUS = usable_cpus()
_state = {"debug": False, "program": False, "interrupted": False}


class ModelName(str, Enum):
    ridge = "ridge"
    mmgn = "mmgn"
    cmgn = "cmgn"
    affine = "affine"


class TargetKind(str, Enum):
    auto = "auto"
    pixels = "pixels"
    gmm = "gmm"
    gaussian = "gaussian"


class SolverName(str, Enum):
    auto = "auto"
    kl = "kl"
    sliced = "sliced"
    adam = "adam"


class LossName(str, Enum):
    kl = "kl"
    moment = "moment"


class DeviceName(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


#: What the dynamic loader says of a library it had no memory to map (an ImportError's message).
_NO_MEMORY_TO_LOAD = ("failed to map segment", "cannot allocate memory")

#: What a command, or an option, that maps with torch says where torch is missing.
_NEEDS_TORCH = ("PyTorch, which is not installed: pip install torch (any ≥ 2.1; a default fit and applying its map "
                "run without it)")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn a ColorotError, a failed allocation or a file system's refusal into a one-line message
    and its exit code (traceback with --debug)."""
    try:
        yield
    except ColorotError as exc:
        if _state["debug"]:
            raise
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except MemoryError:  # an allocation failed outside training (which raises its own TrainingError)
        if _state["debug"]:
            raise
        stderr.print("[bold red]error:[/] out of memory: images are held whole (refuse huge ones with "
                     "--max-image-pixels, or downscale them), a fit trains on --max-pixels of their pixels; or run "
                     "fewer --jobs", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _say_interrupted()
        raise typer.Exit(130) from None
    except ModuleNotFoundError as exc:  # torch, a dependency, missing from an incomplete install
        if exc.name != "torch" or _state["debug"]:
            raise
        stderr.print(f"[bold red]error:[/] this needs {_NEEDS_TORCH}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except ImportError as exc:  # a library's compiled code that could not be mapped: memory ran out (ulimit -v)
        if _state["debug"] or not any(sign in str(exc).lower() for sign in _NO_MEMORY_TO_LOAD):
            raise
        stderr.print("[bold red]error:[/] out of memory: a library's code could not be loaded "
                     f"({escape(str(exc).splitlines()[0][:160])}); raise the memory limit (ulimit -v), or run fewer "
                     "--jobs", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # a path the system refuses to look at where no check foresaw it (a name over its limit)
        if isinstance(exc, BrokenPipeError) or _state["debug"]:  # a closed pipe is left to click
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        stderr.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", highlight=False,
                     soft_wrap=True)
        raise typer.Exit(1) from None


class _Progress(Progress):
    """Rich's progress bar, which prints nothing at all when disabled (Rich before 14.3 printed an
    empty line on stopping: a blank line on stderr after every run, before every ``error:``)."""

    def stop(self) -> None:
        if not self.disable:
            super().stop()


def _progress() -> Progress:
    """A Rich progress bar on stderr, shown only when stderr is a terminal."""
    return _Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[extra]}"), console=stderr, disable=not stderr.is_terminal, transient=False,
    )


def _emit(as_json: bool, document: dict, lines: list[str], *, to_stderr: bool = False) -> None:
    """Print the result: one JSON document, or human-readable lines, on stdout (the lines on
    stderr with ``to_stderr``, when stdout carries an image)."""
    if to_stderr:
        for line in lines:
            stderr.print(line, markup=False, highlight=False, soft_wrap=True)
    elif as_json:
        _write_stdout(json.dumps(_strict_json(document), indent=2, default=str, allow_nan=False) + "\n")
    else:
        _write_stdout("".join(f"{line}\n" for line in lines))


def _strict_json(value):
    """``value`` with every NaN or infinite float as None: JSON has no such numbers, and strict
    parsers refuse Python's ``NaN`` (a crafted or damaged checkpoint's training record can hold one)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


def _write_stdout(data: str | bytes) -> None:
    """Write ``data`` to stdout, all of it, and flush it; a full disk, a closed device or a closed
    stdout is a DestinationError (a closed pipe is left to click, which exits 1 quietly). Python's
    buffered write of a large block can return having written part of it (a file system that filled
    up): the rest is written until it is taken or the file system says why not. Text is written with
    its control characters escaped (:func:`_visible`); bytes (an image, a LUT) as they are."""
    if sys.stdout is None:
        raise DestinationError("cannot write to stdout: it is closed")
    if isinstance(data, str):
        data = _encoded(_visible(data), getattr(sys.stdout, "encoding", None) or "utf-8",
                        getattr(sys.stdout, "errors", None) or "strict")
    try:
        sys.stdout.flush()  # what was printed before, first
        rest = memoryview(data)
        while rest:
            written = sys.stdout.buffer.write(rest)
            if not written:
                raise OSError(errno.EIO, "the write took nothing")
            rest = rest[written:]
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise DestinationError(f"cannot write to stdout ({exc.strerror or exc})") from exc


def _encoded(text: str, encoding: str, errors: str) -> bytes:
    """``text`` in stdout's encoding: as the stream would write it, else (a UTF-8 locale's stdout is
    strict) with a file name's undecodable bytes written back as they are (``os.fsdecode`` made
    them lone surrogates: ``surrogateescape``, as ``ls`` shows them), else with what the encoding
    lacks escaped (an "→" on a Latin-1 terminal). The summary of a run that wrote its files must
    not end in a UnicodeEncodeError."""
    for handler in (errors, "surrogateescape", "backslashreplace"):
        try:
            return text.encode(encoding, handler)
        except UnicodeEncodeError:
            continue
    return text.encode(encoding, "replace")


def _read_stdin() -> bytes:
    """All of stdin; ImageReadError when it is closed (the command started with ``<&-``)."""
    if sys.stdin is None:
        raise ImageReadError("cannot read stdin: it is closed")
    return sys.stdin.buffer.read()


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
    _state["debug"], _state["interrupted"] = debug, False
    warnings.simplefilter("always", ImageMetadataWarning)  # each image's own, however many
    warnings.showwarning = _show_warning


_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """colorot's warnings as one line on stderr (``warning: ...``), others as Python shows them."""
    if issubclass(category, ImageMetadataWarning):
        stderr.print(f"warning: {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_STRENGTH_HELP = "Strength t in [0, 1]: (1−t)·x + t·T(x); 0 is the identity, 1 the full map."
_KEEP_LUMINANCE_HELP = ("Keep each pixel's luma (Rec. 709 weights) and take only the colours: y + (Y(x) − Y(y))·(1, 1, "
                        "1), after --strength (no longer a monotone map in general).")
_SATURATION_HELP = ("Scale colourfulness around each output's luma, S ≥ 0: Y(y) + S·(y − Y(y)); 0 is grey, 1 unchanged "
                    "(one-to-one for S > 0, no longer a gradient map nor monotone).")
_NEUTRAL_HELP = ("Remove this fraction, in [0, 1], of the cast the map gives mid-grey: a constant shift, still a monotone "
                 "gradient map.")
_INVERSE_HELP = ("Apply the inverse map T⁻¹ (back from the target's style), solved per colour by Newton. "
                 "Checked on 2048 pixels of each input: a warning when T(T⁻¹(y)) misses y by over 2/255, or "
                 "over 1 % of them have T⁻¹(y) more than 2/255 outside the cube (clipped: false colours) or "
                 "a gain 1/σ_min(J_T) over 4 (half a code of noise in, over 2 out: banding).")
_CONVERT_SPACE_HELP = ("An input in another colour space than the map was fitted in (by their ICC profiles: "
                       "Display P3 or Adobe RGB against sRGB) is taken into the map's space, mapped there and taken "
                       "back into its own (relative colorimetric: colours outside the map's gamut are clipped; "
                       "8-bit images by LittleCMS, 16-bit ones in floating point, between matrix/TRC profiles), so "
                       "its output shows the map's colours. Without it such an input is mapped code for code, with "
                       "a warning.")
_INVERSE_LUT_HELP = ("Export the inverse map T⁻¹, solved per grid colour by Newton; a warning when over 10 % of "
                     "the entries lie more than 2/255 outside the cube.")


def _unit_interval(value: float) -> float:
    """A float option's value, refused (a usage error, exit 2) outside [0, 1] or NaN."""
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"must be a number in [0, 1], got {value!r}")  # repr: 1.0000001, not 1
    return value


def _saturation_value(value: float) -> float:
    """--saturation's value, refused (a usage error, exit 2) when negative, NaN or beyond float32's
    largest number (infinite where the map's colours are float32: see controls.MAX_SATURATION)."""
    from colorot.controls import MAX_SATURATION

    if not 0.0 <= value <= MAX_SATURATION:
        raise typer.BadParameter(f"must be a finite number ≥ 0 (at most {MAX_SATURATION!r}), got {value!r}")
    return value


# Options several commands share, declared once.
_MaxImagePixels = Annotated[Optional[int], typer.Option(rich_help_panel="Inputs", min=1,
                                                        help="Raise the limit on pixels per image (Pillow's guard against decompression bombs).")]
_Json = Annotated[bool, typer.Option("--json", rich_help_panel="Output", help="Print the result as one JSON document.")]
_Strength = Annotated[float, typer.Option(rich_help_panel="Map", callback=_unit_interval, help=_STRENGTH_HELP)]
_KeepLuminance = Annotated[bool, typer.Option("--keep-luminance", rich_help_panel="Colour controls",
                                              help=_KEEP_LUMINANCE_HELP)]


def _usage_checked(check: Callable[[object], object], value: object) -> object:
    """``value``, or a usage error (exit 2) with the message of the ConfigError ``check(value)`` raises."""
    try:
        check(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def _components_value(value: str | None) -> str | None:
    """--components' text: 'auto' (any case) or a positive integer, else a usage error (exit 2)."""
    if value is None or value.lower() == "auto":
        return None if value is None else "auto"
    if not (value.isascii() and value.isdigit() and int(value) >= 1):
        raise typer.BadParameter(f"must be a positive integer or 'auto', not {value!r}")
    return value


def _shard_value(value: str | None) -> str | None:
    """--shard's text, refused unless it reads i/N with 0 ≤ i < N."""
    return None if value is None else _usage_checked(apply_mod.parse_shard, value)


def _sigma_value(value: float | None) -> float | None:
    """--smooth's value, refused unless finite and ≥ 0."""
    if value is None:
        return None
    from colorot.sequence import check_sigma  # here: the module imports the estimator

    return _usage_checked(check_sigma, value)


def _range_value(value: float | None) -> float | None:
    """--smooth-range's value, refused unless > 0."""
    if value is None:
        return None
    from colorot.sequence import check_range

    return _usage_checked(check_range, value)


_Saturation = Annotated[float, typer.Option(rich_help_panel="Colour controls", callback=_saturation_value,
                                            help=_SATURATION_HELP)]
_Neutral = Annotated[float, typer.Option(rich_help_panel="Colour controls", callback=_unit_interval, help=_NEUTRAL_HELP)]
_Recursive = Annotated[bool, typer.Option(rich_help_panel="Inputs", help="Descend into sub-folders of folder inputs.")]
_Overwrite = Annotated[bool, typer.Option("--overwrite", "--force", rich_help_panel="Output",
                                          help="Replace outputs that already exist.")]
_InPlace = Annotated[bool, typer.Option("--in-place", rich_help_panel="Output", help="Allow outputs inside an input folder.")]
_Suffix = Annotated[Optional[str], typer.Option(rich_help_panel="Output",
                                                help="Output format by suffix, e.g. .png (default: the input's).")]
_StdoutFormat = Annotated[Optional[str], typer.Option("--format", rich_help_panel="Output", help="Format of an image written "
                                                      "to stdout ('-'), e.g. png or jpg (default: the input's).")]
_Quality = Annotated[int, typer.Option(rich_help_panel="Output", min=1, max=100, help="JPEG/WebP/AVIF/HEIC quality.")]
_FromStdin = Annotated[bool, typer.Option("--from-stdin", rich_help_panel="Inputs", help="Read input file paths from stdin, "
                                          "one a line; the only positional path is then the output folder.")]
_BatchPreview = Annotated[Optional[Path], typer.Option(rich_help_panel="Output", help="Write a contact sheet of a sample "
                                                       "of the batch (input | output; for match, the reference beside them) to this .png, .jpg, .webp, "
                                                       ".tif or .avif file (formats that keep the EXIF mark by which a "
                                                       "rerun replaces its own sheet).")]


def _images_and_targets(images: list[Path], targets: list[str], distribution: str) -> tuple[list, list, str]:
    """Sources, targets and the target distribution from fit's arguments.

    With ``--target`` images every positional is a source; without, exactly
    SOURCE TARGET (else a usage error, exit 2). ``--target gmm|gaussian`` (no such file) is the old spelling
    of ``--distribution``.
    """
    target_images = []
    for value in targets:
        if value in ("gmm", "gaussian") and not Path(value).exists():
            if distribution not in ("auto", value):
                raise ConfigError(f"--target {value} (deprecated: --distribution {value}) contradicts "
                                  f"--distribution {distribution}; give --distribution alone")
            stderr.print(f"warning: --target {value} is deprecated; use --distribution {value}", highlight=False)
            distribution = value
        else:
            target_images.append(Path(value))
    if target_images:
        return list(images), target_images, distribution
    if len(images) != 2:
        checkpoint_named = next((f"; {path} is a checkpoint's name: it goes after -o" for path in images
                                 if path.suffix == ".pt"), "")
        raise typer.BadParameter(f"{_counted(len(images), 'image')} given: give SOURCE TARGET, or the sources with one or "
                                 f"more --target images{checkpoint_named}", param_hint="'SOURCE TARGET'")
    return [images[0]], [images[1]], distribution


@app.command(cls=_Command)
def fit(
    images: Annotated[list[Path], typer.Argument(metavar="SOURCE TARGET", help="SOURCE TARGET; or, with --target, "
                                                 "the source images.",
                                                 show_default=False)],
    output: Annotated[str, typer.Option("-o", "--output", metavar="PATH", rich_help_panel="Output",
                                        help="Checkpoint file to write.")],  # str: a Path drops a trailing '/'
    targets: Annotated[Optional[list[str]], typer.Option("--target", "-t", metavar="IMAGE", rich_help_panel="Inputs", help="A target image (repeat for "
                       "several; pixels are pooled). Then every positional image is a source.")] = None,
    masks: Annotated[Optional[list[Path]], typer.Option("--mask", metavar="MASK", rich_help_panel="Inputs", help="A mask per source, in order (white = "
                     "fit on these pixels).")] = None,
    target_masks: Annotated[Optional[list[Path]], typer.Option("--target-mask", metavar="MASK", rich_help_panel="Inputs", help="A mask per target image, "
                            "in order.")] = None,
    model: Annotated[ModelName, typer.Option(rich_help_panel="Map", help="Map: ridge-sum MGN, M-MGN, C-MGN, or the closed-form Gaussian "
                                                     "map.")] = ModelName.ridge,
    solver: Annotated[SolverName, typer.Option(rich_help_panel="Training", help="kl: the exact KL to the fitted density "
                                               "plus μ·SW₂², for the ridge map from the sliced solution, for cmgn/mmgn by "
                                               "full-batch L-BFGS (seconds); sliced: sliced-W₂ majorise–minimise alone "
                                               "(ridge); adam: train any network on the KL loss (tens of seconds); auto: kl.")] = SolverName.auto,
    distribution: Annotated[TargetKind, typer.Option("--distribution", rich_help_panel="Target", help="What the map transports onto: a "
                            "Gaussian mixture (EM), a Gaussian (MLE) or the target's pixels (sliced solver only); "
                            "auto: gmm, pixels for the sliced solver.")] = TargetKind.auto,
    components: Annotated[Optional[str], typer.Option(rich_help_panel="Target", callback=_components_value, help="Mixture components K, or 'auto' (BIC among 1–6, 8 and 10) "
                          "\\[default: 10 for the kl solver, at most the target's distinct colours; auto "
                          "otherwise].", show_default=False)] = None,
    loss: Annotated[LossName, typer.Option(rich_help_panel="Training", help="kl: exact reverse KL; moment: Gaussian moment-matching KL.")] = LossName.kl,
    sw_weight: Annotated[Optional[float], typer.Option(rich_help_panel="Training", help="μ of the mass-covering term μ·SW₂²(mapped, target "
                         "pixels); 0 = KL alone \\[default: 100000 for the kl solver, 5000 for adam].",
                         show_default=False)] = None,
    sw_directions: Annotated[Optional[int], typer.Option(rich_help_panel="Training", help="Directions of the SW₂ term per step, drawn from a fixed "
                             f"bank of 256 (adam only) \\[default: {DEFAULT_SW_DIRECTIONS}].", show_default=False)] = None,
    transport_weight: Annotated[float, typer.Option(rich_help_panel="Training", help="λ of the added λ·E‖T(x)−x‖² (RGB units).")] = 0.0,
    steps: Annotated[Optional[int], typer.Option(rich_help_panel="Training", help="KL majorise–minimise iterations, sliced iterations or Adam "
                                                 "steps (default: 20 for kl, 40 for kl with cmgn/mmgn, 30 for sliced, 2000 for adam).")] = None,
    lr: Annotated[Optional[float], typer.Option(rich_help_panel="Training", help="Adam learning rate, cosine-annealed to 5% "
                                                "(default: 0.05 for ridge, 0.03 for mmgn, 0.01 for cmgn).")] = None,
    batch_size: Annotated[int, typer.Option(rich_help_panel="Training", help="Pixels per training step.")] = DEFAULT_BATCH_SIZE,
    max_pixels: Annotated[int, typer.Option(rich_help_panel="Training", help="Source and target pixels sampled for training.")] = DEFAULT_MAX_PIXELS,
    ridge: Annotated[Optional[float], typer.Option(rich_help_panel="Target", help="Variance added to every target covariance \\[default: "
                     "0.0001 for the kl solver, 0.0004 otherwise].", show_default=False)] = None,
    eps: Annotated[float, typer.Option(rich_help_panel="Map", help="Strong-convexity floor: Jacobian eigenvalues ≥ eps.")] = DEFAULT_EPS,
    hidden: Annotated[Optional[int], typer.Option(rich_help_panel="Map", help="Hidden units (ridge units; per module for M-MGN).")] = None,
    layers: Annotated[Optional[int], typer.Option(rich_help_panel="Map", help="C-MGN layers.")] = None,
    modules: Annotated[Optional[int], typer.Option(rich_help_panel="Map", help="M-MGN modules.")] = None,
    device: Annotated[DeviceName, typer.Option(rich_help_panel="Training", help="Where to train.")] = DeviceName.auto,
    seed: Annotated[int, typer.Option(rich_help_panel="Training", min=0, max=2**32 - 1,
                                      help="Random seed (training is deterministic on CPU).")] = 0,
    max_image_pixels: _MaxImagePixels = None,
    preview: Annotated[Optional[Path], typer.Option(rich_help_panel="Output", help="Write a contact sheet (source | result | target, "
                       "RGB histograms, loss curve) to this image file (e.g. preview.png).")] = None,
    force: Annotated[bool, typer.Option("--force", "--overwrite", rich_help_panel="Output",
                                        help="Replace an existing checkpoint.")] = False,
    as_json: _Json = False,
) -> None:
    """Fit a colour map from SOURCE to TARGET and save it as a checkpoint.

    With --target, every positional image is a source and each --target image a target (pixels pooled).
    Full reference: docs/cli.md.

    Examples:
      colorot fit day.jpg sunset.jpg -o model.pt
      colorot fit day.jpg storm.jpg --target sunset.jpg -o pooled.pt
      colorot fit day.jpg sunset.jpg -o sliced.pt --solver sliced
      colorot fit day.jpg sunset.jpg -o model.pt --preview preview.png
    """
    with _user_errors():
        sources, target_images, target_kind = _images_and_targets(images, targets or [], distribution.value)
        inputs = [*sources, *target_images, *(masks or []), *(target_masks or [])]
        if str(output) == "-":  # as apply and export-lut read it; a file named '-' was written
            raise ConfigError("fit saves its checkpoint to a file, not to stdout: give -o a file name (e.g. model.pt)")
        if not is_any_of(output, inputs):  # that is refused below as overwriting an input
            _refuse_an_image_name(output, "the map is saved as a checkpoint (e.g. model.pt); to write the matched "
                                          f"image in one step: colorot match TARGET SOURCE {output}")
        check_file_output(output, inputs, replace=force, flag="--force", what="checkpoint")  # 'out/': a folder
        output = Path(output)
        if preview is not None:
            preview_mod.check_preview_path(preview, [*inputs, output], replace=force, flag="--force")
            if importlib.util.find_spec("torch") is None:  # the sheet maps its thumbnails with torch: said first
                raise ConfigError(f"--preview needs {_NEEDS_TORCH}")
        n_components = _components(components)
        from colorot.transfer import ColorTransfer

        estimator = ColorTransfer(
            model=model.value, target=target_kind, solver=solver.value, n_components=n_components, loss=loss.value,
            sw_weight=sw_weight, sw_directions=sw_directions, transport_weight=transport_weight, steps=steps, lr=lr, batch_size=batch_size,
            max_pixels=max_pixels, ridge=ridge, eps=eps, hidden=hidden, layers=layers, modules=modules,
            device=device.value, random_state=seed, max_image_pixels=max_image_pixels,
        )
        with _progress() as bar:
            total = estimator.resolved_steps() if estimator.resolved_solver() != "closed-form" else 0
            task = bar.add_task("training", total=total, extra="")
            estimator.fit(sources, target_images, source_mask=masks or None, target_mask=target_masks or None,
                          callback=lambda step, value: bar.update(task, completed=step, extra=f"loss {value:.4g}"))
        saved = []

        def save() -> None:
            estimator.save(output, overwrite=force)  # a checkpoint another run wrote meanwhile is kept
            saved.append(output)

        if preview is not None:  # written, then the checkpoint, then the preview named: either refused, neither lands
            try:
                preview_mod.fit_preview(preview, estimator.map_, sources[0], target_images[0],
                                        estimator.history_.losses, before_naming=save,
                                        steps=estimator.train_info_["steps"], replace=force)
            except OutputExistsError as exc:  # the preview another run wrote meanwhile, kept: the map was saved
                if not saved:
                    raise
                raise OutputExistsError(f"{exc}; the checkpoint {output} was written") from exc
        else:
            save()
        info = estimator.train_info_
        _emit(as_json, {"checkpoint": str(output), **info,
                        "components": _component_count(estimator.target_dist_),
                        "sources": [str(p) for p in sources], "targets": [str(p) for p in target_images],
                        "preview": str(preview) if preview else None},
              [f"wrote {output}: {info['model']} map ({info['solver']}), {estimator.target_dist_.describe()}, "
               f"{len(sources)} source(s), "
               f"{len(target_images)} target(s), {_counted(info['steps'], 'step' if info['solver'] == 'adam' else 'iteration')}, "
               f"final loss {_final_loss(info)}, "
               + (f"KL {info['kl_nats']:.3f} nats, " if info.get("kl_nats") is not None else "")
               + f"{info['fit_seconds']:.1f} s"] + ([f"preview {preview}"] if preview else []))


def _counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _component_count(target) -> int | None:
    """A mixture's (or Gaussian's) component count for the JSON; None for the target's pixels, whose
    kernels are its kept pixels, no components (it said 256)."""
    return None if target.kind == "pixels" else target.n_components


def _final_loss(info: dict) -> str:
    """A fit's final loss for its summary line: none for a closed form, or for a fit of no iterations."""
    if info["final_loss"] is not None:
        return format(info["final_loss"], ".4g")
    return "n/a (closed form)" if info["solver"] == "closed-form" else "n/a (no iterations: the start map)"


@app.command("apply", cls=_Command)
def apply_command(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Checkpoint written by 'colorot fit'.")],
    paths: Annotated[list[str], typer.Argument(metavar="INPUT... OUTPUT", help="Input images or folders, then the "
                                               "output file or folder (a name without an image suffix, or with a trailing '/', is a folder). '-' reads an image from "
                                               "stdin / writes it to stdout.", show_default=False)],
    recursive: _Recursive = True,
    overwrite: _Overwrite = False,
    in_place: _InPlace = False,
    suffix: _Suffix = None,
    output_format: _StdoutFormat = None,
    quality: _Quality = 95,
    max_image_pixels: _MaxImagePixels = None,
    strength: _Strength = 1.0,
    inverse: Annotated[bool, typer.Option("--inverse", rich_help_panel="Map", help=_INVERSE_HELP)] = False,
    keep_luminance: _KeepLuminance = False,
    saturation: _Saturation = 1.0,
    neutral: _Neutral = 0.0,
    exact: Annotated[bool, typer.Option("--exact", rich_help_panel="Map", help="Evaluate the map itself on every pixel instead of once "
                                                        "per distinct colour (8-bit) or through its tabulated "
                                                        "profiles (16-bit ridge maps).")] = False,
    convert_space: Annotated[bool, typer.Option("--convert-space", rich_help_panel="Inputs",
                                                help=_CONVERT_SPACE_HELP)] = False,
    from_stdin: _FromStdin = False,
    shard: Annotated[Optional[str], typer.Option(rich_help_panel="Batch", callback=_shard_value,
                                                 help="Do only shard i of N (0 ≤ i < N), e.g. 0/4: files are "
                                                 "split by a hash of their output path.")] = None,
    preview: _BatchPreview = None,
    jobs: Annotated[int, typer.Option(rich_help_panel="Batch", min=1, help="Files processed at once "
                                                "\\[default: the CPUs this process may use].", show_default=False)] = _CPUS,
    as_json: _Json = False,
) -> None:
    """Apply a fitted map to image files and folders (the tree is mirrored under the output).

    One folder input lands at the top of OUTPUT; with several inputs each keeps its own name under it.
    Full reference: docs/cli.md.

    Examples:
      colorot apply model.pt photos/ graded/
      colorot apply model.pt day.jpg half.jpg --strength 0.5 --saturation 0.8
      cat in.jpg | colorot apply model.pt - - --format png > out.png
    """
    with _user_errors():
        inputs, output, streaming = _batch_paths(paths, "apply MODEL", from_stdin, as_json,
                                                 {"--shard": shard, "--preview": preview, "--from-stdin": from_stdin})
        _check_stdout_format(output_format, output, suffix, streaming)
        from colorot.controls import Controls

        controls = Controls(keep_luminance=keep_luminance, saturation=saturation, neutral=neutral)
        apply_mod.refuse_convert_space_with_inverse(convert_space, inverse)
        document: dict = {"strength": strength, "inverse": inverse, "controls": controls.describe(),
                          "convert_space": convert_space}
        # The table is shared by the file workers; a ridge or affine map gets one without torch.
        fitted, table = apply_mod.prepare(model, strength=strength, inverse=inverse, exact=exact, controls=controls)
        space = None if inverse else apply_mod.map_space(model)  # each image is checked against it
        apply_mod.warn_space_unknown(space, convert_space, str(model))
        document["convert_space"] = convert_space and space is not None  # what was done
        if fitted is not None and jobs > 1:
            import torch

            torch.set_num_threads(1)  # parallelism comes from the file workers
        replace_preview = True  # a --preview's, decided when its path is checked (none with streams)
        if streaming:
            report = _apply_stream(fitted, inputs[0], output, output_format, table, quality, max_image_pixels,
                                   overwrite, space, convert_space)
        else:
            job_plan = _batch_plan(inputs, output, from_stdin=from_stdin, recursive=recursive, overwrite=overwrite,
                                   in_place=in_place, suffix=suffix, shard=shard)
            if preview is not None:
                replace_preview = _check_batch_preview(preview, [model, *_plan_files(job_plan)], inputs, in_place,
                                                       overwrite)
            report = _run_with_progress(job_plan, fitted, jobs=jobs, table=table, quality=quality,
                                        max_pixels=max_image_pixels, replace=overwrite, space=space,
                                        convert_space=convert_space)
        preview_error = _batch_preview(preview, report, replace=replace_preview)
        document.update(_batch_summary(report, shard, preview, preview_error))
        if inverse:
            document.update(_check_inverse_on(fitted, [j.src for j in report.written], max_image_pixels))
        lines = [f"{len(report.written)} written, {len(report.skipped)} skipped (exist; --overwrite to redo), "
                 f"{len(report.failed)} failed in {report.seconds:.1f} s"]
        if inverse and document["inverse_checks"]:
            lines.append(f"inverse on the inputs' own colours: round trip max |T(T⁻¹(y)) − y| = "
                         f"{document['round_trip_error']:.2e}, ill-conditioned: "
                         f"{'yes' if document['inverse_ill_conditioned'] else 'no'}")
        lines += _batch_outcome_lines(report, preview, preview_error)
        _emit(as_json, document, lines, to_stderr=output == "-")
    if report.exit_code or preview_error:
        raise typer.Exit(report.exit_code or 3)


def _batch_paths(paths: list[str], usage: str, from_stdin: bool, as_json: bool,
                 not_with_streams: dict[str, object]) -> tuple[list[str], str, bool]:
    """The inputs, the output and whether '-' streams one image, from a batch command's paths; a
    usage error (exit 2) for a wrong count, ConfigError for '-' beside an option of
    ``not_with_streams`` that is set."""
    if from_stdin:
        if len(paths) != 1:
            raise typer.BadParameter(f"with --from-stdin give only the output folder: colorot {usage} --from-stdin "
                                     "OUT/", param_hint="'INPUT... OUTPUT'")
        inputs, output = [], paths[0]
    elif len(paths) < 2:
        raise typer.BadParameter(f"give at least one input and an output: colorot {usage} INPUT... OUTPUT",
                                 param_hint="'INPUT... OUTPUT'")
    else:
        *inputs, output = paths
    if not all(path.strip() for path in paths):
        raise ConfigError("an empty path was given (an unset variable?)")
    streaming = "-" in inputs or output == "-"
    if streaming and (len(inputs) != 1 or any(not_with_streams.values())):
        raise ConfigError(f"'-' works with exactly one input and one output (no {', '.join(not_with_streams)})")
    if output == "-" and as_json:
        raise ConfigError("--json cannot share stdout with the image; the summary goes to stderr")
    return inputs, output, streaming


def _check_stdout_format(output_format: str | None, output: str, suffix: str | None, streaming: bool) -> None:
    """ConfigError for --format with a file or folder output (it names stdout's format only), and for
    --suffix with '-' (it names a batch's; it was ignored); ImageWriteError for a --format, or a
    streamed image's output file suffix, that cannot be written, before any work (it failed the
    image, exit 3, or ended the run, after the fit)."""
    if output_format is not None and output != "-":
        raise ConfigError("--format names the format of an image written to stdout ('-'); a file's format "
                          "comes from its suffix (--suffix for a folder)")
    if output_format is not None:
        from colorot.imageio import writable_format

        writable_format(output_format)
    if suffix is not None and streaming:
        raise ConfigError("--suffix names the format of a batch's output files; an image written to stdout ('-') "
                          "takes --format, and one read from stdin the suffix of its output file's name")
    if streaming and output != "-" and not output.endswith(("/", os.sep)) and not Path(output).is_dir():
        from colorot.imageio import writable_format  # (a folder is refused as one, later)

        try:
            writable_format(Path(output).suffix)
        except ImageWriteError as exc:  # its suggestions (--format, --suffix) do not name this file's format
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise ImageWriteError(f"{output}: colorot cannot write the format of its suffix {Path(output).suffix!r}: "
                                  f"give the output file one of {suffixes}") from exc


def _batch_plan(inputs: list[str], output: str, *, from_stdin: bool, recursive: bool, overwrite: bool,
                in_place: bool, suffix: str | None, shard: str | None) -> apply_mod.Plan:
    """The jobs of a batch command: its inputs (or the paths listed on stdin), then its shard."""
    if from_stdin:
        job_plan = apply_mod.plan_listed(_listed_paths(), output, overwrite=overwrite, suffix=suffix)
    else:
        job_plan = apply_mod.plan([Path(p) for p in inputs], output, recursive=recursive, overwrite=overwrite,
                                  in_place=in_place, suffix=suffix)
        if job_plan.left_out:
            shown = ", ".join(escape(str(path)) for path in job_plan.left_out[:3])
            stderr.print(f"warning: {len(job_plan.left_out)} image(s) under the output folder {escape(str(output))} "
                         f"left out ({shown}{', …' if len(job_plan.left_out) > 3 else ''}): --in-place takes the "
                         "images there for earlier outputs; move them out of it to map them",
                         highlight=False, soft_wrap=True)
    return apply_mod.shard(job_plan, *apply_mod.parse_shard(shard), output) if shard else job_plan


def _listed_paths() -> list[str]:
    """The paths listed on stdin, one a line: split at each newline alone (a name may hold a carriage
    return, a form feed or another of the breaks ``str.splitlines`` splits at), a CRLF list's carriage
    returns and a UTF-8 byte-order mark dropped (a UTF-16 list refused), and bytes that are not UTF-8
    kept as the file system's names (``os.fsdecode``;
    where it decodes strictly, as on Windows, in the locale's encoding, a name it cannot spell
    replaced, so that the list names it as not found)."""
    data = _read_stdin()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Windows' "Unicode": PowerShell 5.1's redirect, Notepad
        raise ConfigError("the list on stdin is UTF-16; give it as UTF-8 (in PowerShell: ... | Out-File -Encoding "
                          "utf8, or Set-Content -Encoding utf8)")
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark (Notepad): no part of the first name
    try:
        text = os.fsdecode(data)
    except UnicodeDecodeError:
        text = data.decode(locale.getpreferredencoding(False), "replace")
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _check_batch_preview(preview: Path, protected: list, inputs: list[str], in_place: bool, overwrite: bool) -> bool:
    """A batch's preview replaces the sheet of an earlier batch (a rerun resumes; the sheet is known
    by its mark, :func:`preview_mod.is_batch_sheet`), any other file only with ``overwrite``, and
    gets its folder made as the outputs do; it never replaces one of the run's files (``protected``:
    :func:`preview_mod.check_preview_path`), nor lands inside an input folder unless ``in_place``
    (a rerun would take the sheet for a photo), as an output would. Returns whether the sheet may
    replace a file at its path when written: else one another run writes there meanwhile is kept."""
    preview_mod.check_preview_path(preview, protected, replace=True, flag="--overwrite", folder_made=True)
    preview_mod.check_batch_sheet_format(preview)
    if not overwrite and os.path.lexists(preview) and not preview_mod.is_batch_sheet(preview):
        raise OutputExistsError(f"{preview} already exists and is not a preview sheet of a colorot batch (use "
                                "--overwrite to replace it)")
    if not in_place and any(Path(src).is_dir() and is_within(preview, src) for src in inputs):
        raise ConfigError(f"the preview {preview} is inside an input folder; choose another path or pass --in-place")
    return overwrite or os.path.lexists(preview)  # what is there now is an earlier batch's sheet, or replaceable


def _all_jobs(job_plan: apply_mod.Plan) -> list[apply_mod.Job]:
    """A plan's jobs, those skipped included."""
    return [*job_plan.jobs, *job_plan.skipped]


def _plan_files(job_plan: apply_mod.Plan) -> list[Path]:
    """Every input and output of a plan, those skipped included."""
    return [path for job in _all_jobs(job_plan) for path in (job.src, job.dst)]


def _batch_preview(preview: Path | None, report: apply_mod.Report, reference: Path | None = None, *,
                   replace: bool = True) -> str | None:
    """Write a batch's --preview of the images it wrote; why it was refused (by the file system, or
    a file another run wrote there meanwhile, kept unless ``replace``), or None. The batch is done by
    then: a refused preview is reported with it (exit 3), not instead of it."""
    if preview is None or not report.written:
        return None
    try:
        preview_mod.batch_preview(preview, [(j.src, j.dst) for j in report.written], reference=reference,
                                  replace=replace)
    except (ImageWriteError, OutputExistsError) as exc:
        return str(exc)
    return None


def _batch_outcome_lines(report: apply_mod.Report, preview: Path | None, preview_error: str | None) -> list[str]:
    """The lines under a batch's summary: its one output named when it was skipped (`colorot apply
    model.pt a.jpg b.jpg`, the output forgotten, takes b.jpg for it, and "1 skipped" alone sent the
    user to --overwrite), each failure, and why its --preview was not written."""
    lines = []
    if report.skipped and len(report.written) + len(report.skipped) + len(report.failed) == 1:
        lines.append(f"skipped: {report.skipped[0].dst} exists (--overwrite replaces it)")
    lines += [f"failed: {error}" for _, error in report.failed]
    if preview_error:
        lines.append(f"failed: preview {preview} not written: {preview_error}")
    elif preview and not report.written:
        lines.append(f"preview {preview} not written: this run wrote no image")
    return lines


def _batch_summary(report: apply_mod.Report, shard: str | None, preview: Path | None, preview_error: str | None) -> dict:
    """What a batch command's JSON says of its run."""
    return {
        "written": [str(j.dst) for j in report.written],
        "skipped": [str(j.dst) for j in report.skipped],
        "failed": [{"input": str(j.src), "error": e} for j, e in report.failed],
        "seconds": round(report.seconds, 3),
        "shard": shard,
        "preview": str(preview) if preview and report.written and not preview_error else None,
        "preview_error": preview_error,
    }


def _check_inverse_on(inverse, sources: list[Path], max_pixels: int | None) -> dict:
    """The inverse checked on each input's own colours (stdin excepted), for the JSON; a warning
    line on stderr for each input where it is ill-conditioned."""
    from dataclasses import asdict

    from colorot.imageio import read_pixels
    from colorot.transforms import check_inverse

    checks = []
    for src in (s for s in sources if str(s) != "-"):
        try:
            pixels = read_pixels(src, max_pixels=max_pixels)
        except ColorotError:  # written, but with no colour to check (e.g. every pixel transparent)
            continue
        check = check_inverse(inverse, pixels)
        checks.append({"input": str(src), **asdict(check), "ill_conditioned": check.ill_conditioned})
        if check.ill_conditioned:
            stderr.print(f"warning: the inverse is ill-conditioned for {escape(str(src))}: it magnifies the noise of "
                         f"{check.gain_share:.1%} of its pixels over 4× (banding; up to {check.gain_max:.3g}×), "
                         f"{check.outside_share:.1%} come from outside the colour cube (false colours; up to "
                         f"{check.outside_max:.3g} away); round trip {check.round_trip_max:.1e}",
                         highlight=False, soft_wrap=True)
    if any(str(s) == "-" for s in sources):  # its bytes are spent: said, not reported as well-conditioned
        stderr.print("note: the inverse was not checked on the image from stdin", highlight=False, soft_wrap=True)
    return {"round_trip_error": max((c["round_trip_max"] for c in checks), default=None),
            "inverse_ill_conditioned": any(c["ill_conditioned"] for c in checks) if checks else None,
            "inverse_checks": checks}


def _run_with_progress(job_plan: apply_mod.Plan, fitted, **kwargs) -> apply_mod.Report:
    """:func:`colorot.apply.run` of a plan (``kwargs``: its ``jobs`` and :func:`~colorot.apply.apply_to_file`'s)
    with a progress bar on stderr; failures are printed as they happen."""
    return _with_progress(len(job_plan.jobs), "applying",
                          lambda done, _: apply_mod.run(job_plan, fitted, on_file_done=done, **kwargs))


def _run_each_with_progress(job_plan: apply_mod.Plan, work, *, jobs: int, label: str, **pool) -> apply_mod.Report:
    """:func:`colorot.apply.run_each` (``pool``: its ``processes`` and ``torch_threads``) with a progress
    bar (files/s) on stderr; failures printed as they happen."""
    return _with_progress(len(job_plan.jobs), label,
                          lambda done, _: apply_mod.run_each(job_plan, work, on_file_done=done, jobs=jobs, **pool))


def _with_progress(total: int, label: str, run) -> apply_mod.Report:
    """``run(on_file_done, on_fit_done)`` with a progress bar of ``total`` files (files/s) on
    stderr; failures printed as they happen; maps fitted ahead of their files (``--sequence``)
    counted in the label."""
    with _progress() as bar:
        task = bar.add_task(label, total=total, extra="")
        fitted = 0

        def fit_done(job: apply_mod.Job, error: str | None) -> None:
            nonlocal fitted
            fitted += 1
            bar.update(task, description=f"{label} ({fitted} maps fitted)")

        def done(job: apply_mod.Job, error: str | None) -> None:
            if error is not None:
                bar.console.print(f"[red]failed:[/] {escape(error)}", highlight=False, soft_wrap=True)
            elapsed = bar.tasks[task].elapsed or 0.0
            completed = bar.tasks[task].completed + 1
            bar.update(task, completed=completed, extra=f"{completed / elapsed:.1f} files/s" if elapsed else "")

        return run(done, fit_done)


def _apply_stream(fitted, source: str, output: str, output_format: str | None, table, quality: int,
                  max_pixels: int | None, overwrite: bool, space, convert_space: bool) -> apply_mod.Report:
    """One image between stdin/stdout and files ('-' on either side)."""
    import time

    start = time.perf_counter()
    job = apply_mod.Job(Path(source), Path(output))
    if _stream_output_exists(output, overwrite):
        return apply_mod.Report([], [job], [], time.perf_counter() - start)
    data = _read_input(source)
    if output == "-":
        with _failed_file(job) as failed:
            encoded = apply_mod.apply_to_bytes(fitted, data, format=output_format, quality=quality,
                                               max_pixels=max_pixels, table=table, space=space,
                                               convert_space=convert_space, name=_stream_name(source))
        if failed:
            return apply_mod.Report([], [], failed, time.perf_counter() - start)
        _write_stdout(encoded)
    else:
        apply_mod.make_folder(Path(output).parent)
        apply_mod.apply_bytes_to_file(fitted, data, output, quality=quality, max_pixels=max_pixels, table=table,
                                      replace=overwrite, space=space, convert_space=convert_space)
    return apply_mod.Report([job], [], [], time.perf_counter() - start)


@contextmanager
def _failed_file(job: apply_mod.Job) -> Iterator[list[tuple[apply_mod.Job, str]]]:
    """Where a file (not stdin) is written to stdout, its error becomes the job's failure, as in a
    batch (exit 3: :attr:`colorot.apply.Report.exit_code`); the list holds it.  An image read from
    stdin keeps the error (exit 1)."""
    failed: list[tuple[apply_mod.Job, str]] = []
    try:
        yield failed
    except ColorotError as exc:
        if str(job.src) == "-" or isinstance(exc, DestinationError):
            raise
        failed.append((job, str(exc)))


def _stream_name(source: str) -> str:
    """How errors and warnings name a streamed image: its file, or ``<stdin>``."""
    return "<stdin>" if source == "-" else source


def _stream_output_exists(output: str, overwrite: bool) -> bool:
    """Whether the file ``output`` (not stdout) of an image read from stdin exists, to be skipped
    unless ``overwrite``; ConfigError for a folder."""
    if output == "-":
        return False
    if Path(output).is_dir() or output.endswith(("/", os.sep)):
        raise ConfigError("an image from stdin needs an output file name, not a folder")
    return os.path.lexists(output) and not overwrite


@app.command("match", cls=_Command)
def match_command(
    reference: Annotated[Path, typer.Argument(metavar="REFERENCE", help="The image whose colours every input takes.")],
    paths: Annotated[list[str], typer.Argument(metavar="INPUT... OUTPUT", help="Input images or folders, then the "
                                               "output file or folder, as for 'colorot apply' ('-': stdin / stdout).", show_default=False)],
    save_maps: Annotated[Optional[Path], typer.Option(rich_help_panel="Output", help="Keep each input's checkpoint in this folder (the "
                         "output tree mirrored, suffix .pt), for 'colorot apply' or 'export-lut' later.")] = None,
    model: Annotated[ModelName, typer.Option(rich_help_panel="Fit (each input's map)", help="Map, as for 'colorot fit'.")] = ModelName.ridge,
    solver: Annotated[SolverName, typer.Option(rich_help_panel="Fit (each input's map)", help="Solver, as for 'colorot fit'.")] = SolverName.auto,
    distribution: Annotated[TargetKind, typer.Option("--distribution", rich_help_panel="Fit (each input's map)", help="What each map transports onto, as "
                            "for 'colorot fit'.")] = TargetKind.auto,
    components: Annotated[Optional[str], typer.Option(rich_help_panel="Fit (each input's map)", callback=_components_value, help="Mixture components K of the reference, or 'auto' "
                          "\\[default: 10 for the kl solver, auto otherwise].", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(rich_help_panel="Fit (each input's map)", help="Iterations or steps per fit, as for 'colorot fit' "
                                                 "\\[default: 5 KL iterations for the ridge map, each input fitted on 10 000 of "
                                                 "its pixels; the other solvers' as for 'colorot fit'].", show_default=False)] = None,
    sw_weight: Annotated[Optional[float], typer.Option(rich_help_panel="Fit (each input's map)", help="μ of μ·SW₂², as for 'colorot fit'.",
                                                       show_default=False)] = None,
    seed: Annotated[int, typer.Option(rich_help_panel="Fit (each input's map)", min=0, max=2**32 - 1, help="Random seed of every fit.")] = 0,
    sequence: Annotated[bool, typer.Option("--sequence", rich_help_panel="Sequence", help="The inputs are the frames of one "
                                           "sequence, in the natural order of their absolute paths (frame9 before frame10, "
                                           "case ignored): each frame is written through a "
                                           "blend of its neighbours' maps, against flicker; neighbours that grade it "
                                           "differently (a cut) are left out (ridge maps only).")] = False,
    smooth: Annotated[Optional[float], typer.Option(rich_help_panel="Sequence", callback=_sigma_value, help="σ of --sequence's blend, in frames "
                                                    "(0: each frame its own map) \\[default: 1].", show_default=False)] = None,
    smooth_range: Annotated[Optional[float], typer.Option(rich_help_panel="Sequence", callback=_range_value, help="τ of --sequence's blend, in code "
                                                          "values: a neighbour whose map grades the frame D code values (RMS) "
                                                          "apart weighs exp(−½(D/τ)²) as much, so cuts and fast motion are "
                                                          "not blended (inf: no such term) \\[default: 4].",
                                                          show_default=False)] = None,
    recursive: _Recursive = True,
    overwrite: _Overwrite = False,
    in_place: _InPlace = False,
    suffix: _Suffix = None,
    output_format: _StdoutFormat = None,
    quality: _Quality = 95,
    max_image_pixels: _MaxImagePixels = None,
    strength: _Strength = 1.0,
    keep_luminance: _KeepLuminance = False,
    saturation: _Saturation = 1.0,
    neutral: _Neutral = 0.0,
    exact: Annotated[bool, typer.Option("--exact", rich_help_panel="Map", help="Evaluate each map on every pixel instead of once per "
                                                        "distinct colour.")] = False,
    from_stdin: _FromStdin = False,
    shard: Annotated[Optional[str], typer.Option(rich_help_panel="Batch", callback=_shard_value,
                                                 help="Do only shard i of N (0 ≤ i < N), e.g. 0/4.")] = None,
    preview: _BatchPreview = None,
    jobs: Annotated[Optional[int], typer.Option(rich_help_panel="Batch", min=1, help="Files matched at once \\[default: the CPUs this "
                                                "process may use].", show_default=False)] = None,
    as_json: _Json = False,
) -> None:
    """Match every input image to REFERENCE, each with its own fitted map (the reference is fitted once).

    Outputs are laid out as by 'colorot apply'. Full reference: docs/cli.md.

    Examples:
      colorot match sunset.jpg day.jpg storm.jpg matched/
      colorot match grade.jpg photos/ graded/ --save-maps maps/ --jobs 2
      colorot match sunset.jpg day.jpg day_matched.jpg --keep-luminance
      colorot match grade.jpg frames/ graded/ --sequence
    """
    with _user_errors():
        inputs, output, streaming = _batch_paths(paths, "match REFERENCE", from_stdin, as_json,
                                                 {"--shard": shard, "--preview": preview, "--from-stdin": from_stdin,
                                                  "--save-maps": save_maps, "--sequence": sequence})
        _check_stdout_format(output_format, output, suffix, streaming)
        _check_sequence_options(sequence, smooth, smooth_range, shard, model, solver)
        from colorot.controls import Controls
        from colorot.matching import Matcher, MatchWork, plan_maps

        controls = Controls(keep_luminance=keep_luminance, saturation=saturation, neutral=neutral)
        n_components = _components(components)
        jobs = jobs or _CPUS
        job_plan, map_only = None, frozenset()
        replace_preview = True  # a --preview's, decided when its path is checked (none with streams)
        if not streaming:  # every path is checked before the reference is fitted
            job_plan = _batch_plan(inputs, output, from_stdin=from_stdin, recursive=recursive, overwrite=overwrite,
                                   in_place=in_place, suffix=suffix, shard=shard)
            if preview is not None:
                replace_preview = _check_batch_preview(preview, [reference, *_plan_files(job_plan)], inputs, in_place,
                                                       overwrite)
            if save_maps is not None:
                if sequence:
                    from colorot.sequence import DEFAULT_SIGMA, refuse_blends_too_large_to_save

                    refuse_blends_too_large_to_save(len(_all_jobs(job_plan)), DEFAULT_SIGMA if smooth is None else smooth)
                job_plan, map_only = plan_maps(job_plan, save_maps, Path(output), overwrite, reference)
        if is_any_of(reference, [output] if streaming else [job.dst for job in _all_jobs(job_plan)]):
            raise ConfigError(f"an output would overwrite the reference {reference}")
        uses_torch = model != ModelName.ridge or solver == SolverName.adam or exact  # only these evaluate torch maps
        processes = None  # a batch's files in worker processes, started now (colorot.workers)
        if _state["program"] and jobs > 1 and not streaming and len(job_plan.jobs) > 1:
            from colorot.workers import start_server

            processes = start_server(min(jobs, len(job_plan.jobs)))
        if jobs > 1:  # parallelism comes from the file workers: one torch and one BLAS thread each
            from threadpoolctl import threadpool_limits

            import scipy.optimize  # noqa: F401  (loaded first, so that the limit below reaches its BLAS too)
            import sklearn.mixture  # noqa: F401

            if uses_torch:
                import torch

                torch.set_num_threads(1)
            threadpool_limits(1)  # 2 workers × 2 BLAS threads on 2 cores: half the pace (bench/EXPERIMENTS.md, E38)
        matcher = Matcher(reference, model=model.value,
                          solver=solver.value, target=distribution.value, n_components=n_components, steps=steps,
                          sw_weight=sw_weight, random_state=seed, max_image_pixels=max_image_pixels)
        settings = dict(strength=strength, controls=controls, exact=exact, quality=quality, max_pixels=max_image_pixels)
        document: dict = {"reference": str(reference), "strength": strength,
                          "controls": controls.describe()}
        remapped: list = []  # images kept whose missing maps were fitted
        if streaming:
            report = _match_stream(matcher, inputs[0], output, output_format, settings, overwrite)
        else:
            work = MatchWork(matcher, {**settings, "replace": overwrite}, save_maps, Path(output), map_only)
            if sequence:
                from colorot.sequence import DEFAULT_RANGE, DEFAULT_SIGMA, match_sequence

                sigma = DEFAULT_SIGMA if smooth is None else smooth
                tau = DEFAULT_RANGE if smooth_range is None else smooth_range
                document["sequence"] = {"sigma": sigma, "range": tau if math.isfinite(tau) else None}
                report = _with_progress(len(job_plan.jobs), "matching", lambda done, fit_done: match_sequence(
                    work.fit_frame, work.write_frame, job_plan, sigma=sigma, tau=tau, jobs=jobs, on_file_done=done,
                    on_fit_done=_unfitted_neighbours_said(fit_done, set(job_plan.jobs)), processes=processes))
            else:
                report = _run_each_with_progress(job_plan, work, jobs=jobs, label="matching", processes=processes,
                                                 torch_threads=uses_torch)
            remapped = [job for job in report.written if job in map_only]  # an image kept, its map fitted again
            report = dataclasses.replace(report, written=[job for job in report.written if job not in map_only],
                                         skipped=[*report.skipped, *remapped])
            document["maps"] = [str(work.map_path(j)) for j in (*report.written, *remapped)] if save_maps else None
        preview_error = _batch_preview(preview, report, reference=reference, replace=replace_preview)
        document.update(_batch_summary(report, shard, preview, preview_error))
        given = f", {len(remapped)} of them given the map they lacked" if remapped else ""
        lines = [f"{len(report.written)} matched to {reference}, {len(report.skipped)} skipped (exist; --overwrite "
                 f"to redo){given}, {len(report.failed)} failed in {report.seconds:.1f} s"]
        lines += _batch_outcome_lines(report, preview, preview_error)
        _emit(as_json, document, lines, to_stderr=output == "-")
    if report.exit_code or preview_error:
        raise typer.Exit(report.exit_code or 3)


def _unfitted_neighbours_said(fit_done: Callable[[apply_mod.Job, str | None], None], to_write: set
                              ) -> Callable[[apply_mod.Job, str | None], None]:
    """``fit_done``, saying too when the fit of a frame not written this run (its output exists)
    fails: its neighbours are then blended without it, which a rerun must not do silently."""
    def done(job: apply_mod.Job, error: str | None) -> None:
        fit_done(job, error)
        if error is not None and job not in to_write:
            stderr.print(f"warning: {escape(error)} (a frame written earlier): its neighbours are blended without it",
                         highlight=False, soft_wrap=True)

    return done


def _check_sequence_options(sequence: bool, smooth: float | None, smooth_range: float | None, shard: str | None,
                            model: ModelName, solver: SolverName) -> None:
    """ConfigError for --smooth or --smooth-range without --sequence, or --sequence with what it cannot do."""
    if not sequence:
        for name, value in (("--smooth", smooth), ("--smooth-range", smooth_range)):
            if value is not None:
                raise ConfigError(f"{name} sets the blend of --sequence; add --sequence")
        return
    if shard:
        raise ConfigError("--sequence blends each frame with its neighbours, so it needs the whole sequence: no --shard")
    from colorot.sequence import RIDGE_ONLY

    if model != ModelName.ridge or solver == SolverName.adam:
        raise ConfigError(RIDGE_ONLY)


def _match_stream(matcher, source: str, output: str, output_format: str | None, settings: dict,
                  overwrite: bool) -> apply_mod.Report:
    """One image between stdin/stdout and files ('-' on either side), matched to the reference."""
    import time

    from colorot.atomic import write_atomic
    from colorot.imageio import format_for_suffix

    start = time.perf_counter()
    job = apply_mod.Job(Path(source), Path(output))
    if _stream_output_exists(output, overwrite):
        return apply_mod.Report([], [job], [], time.perf_counter() - start)
    data = _read_input(source)
    if output == "-":
        with _failed_file(job) as failed:
            encoded, _ = matcher.match_bytes(data, format=output_format, name=_stream_name(source), **settings)
        if failed:
            return apply_mod.Report([], [], failed, time.perf_counter() - start)
        _write_stdout(encoded)
    else:
        encoded, _ = matcher.match_bytes(data, format=format_for_suffix(Path(output).suffix), **settings)
        apply_mod.make_folder(Path(output).parent)
        write_atomic(Path(output), encoded, ImageWriteError, "image", replace=overwrite)
    return apply_mod.Report([job], [], [], time.perf_counter() - start)


def _read_input(source: str) -> bytes:
    """The bytes of ``source``, or of stdin for '-'."""
    if source == "-":
        return _read_stdin()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from exc


def _components(components: str | None) -> int | str | None:
    """--components as ColorTransfer takes it (checked by :func:`_components_value`): None, 'auto' or an int."""
    return components if components in (None, "auto") else int(components)


@app.command("export-lut", cls=_Command)
def export_lut(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Checkpoint written by 'colorot fit'.")],
    output: Annotated[str, typer.Argument(metavar="LUT.cube", help="The .cube file to write ('-': stdout).")],
    size: Annotated[int, typer.Option(rich_help_panel="Map", min=2, max=65, help="Grid points per axis: 65 (the finest, "
                                      "closest to the map) or 33 (for consumers limited to 33³).")] = 65,
    strength: _Strength = 1.0,
    inverse: Annotated[bool, typer.Option("--inverse", rich_help_panel="Map", help=_INVERSE_LUT_HELP)] = False,
    keep_luminance: _KeepLuminance = False,
    saturation: _Saturation = 1.0,
    neutral: _Neutral = 0.0,
    convert_space: Annotated[bool, typer.Option("--convert-space", rich_help_panel="Map",
                                                help="For a map fitted in another colour space than sRGB (Adobe "
                                                "RGB, Display P3: `colorot info`), bake the table for sRGB codes: "
                                                "each takes it into the map's space, through the map, and back. "
                                                "Without it, such a table takes and gives that space's codes "
                                                "(with a warning).")] = False,
    force: Annotated[bool, typer.Option("--force", "--overwrite", rich_help_panel="Output",
                                        help="Replace an existing file.")] = False,
    as_json: _Json = False,
) -> None:
    """Export the map as an Adobe/Resolve .cube 3-D LUT (domain [0, 1]³ of code values / max in the
    colour space the map was fitted in: sRGB for untagged photos; --convert-space bakes a map fitted in
    another RGB space, with a matrix/TRC profile its checkpoint keeps, for sRGB).

    Full reference: docs/cli.md.

    Examples:
      colorot export-lut model.pt grade.cube
      colorot export-lut model.pt grade33.cube --size 33 --neutral 0.5
      ffmpeg -i in.mp4 -vf lut3d=grade.cube out.mp4
    """
    with _user_errors():
        if output == "-" and as_json:
            raise ConfigError("--json cannot share stdout with the LUT")
        if output != "-":
            _refuse_an_image_name(output, "the LUT is a .cube text file (e.g. grade.cube); to write graded images: "
                                          "colorot apply")
            check_file_output(output, [model], replace=force, flag="--force", what="LUT")
        from colorot.lut_export import refuse_convert_space_with_inverse, table_map
        from colorot.transforms import INVERSE_LUT_BAD_SHARE, lut_outside

        from colorot.controls import Controls

        controls = Controls(keep_luminance=keep_luminance, saturation=saturation, neutral=neutral)
        refuse_convert_space_with_inverse(convert_space, inverse)  # before the checkpoint is read
        ckpt = checkpoint.load(model)
        table = table_map(ckpt.model, profiles.recorded_space(ckpt.train), str(model), strength=strength,
                          inverse=inverse, controls=controls, convert_space=convert_space)
        fitted, table_space, title = table.fitted, table.space, table.title
        lut = bake(fitted, size)
        far_share, far_max = lut_outside(lut.table)
        ill_conditioned = inverse and far_share > INVERSE_LUT_BAD_SHARE
        if ill_conditioned:
            stderr.print(f"warning: {far_share:.0%} of the inverse LUT's entries lie outside the colour cube (up to "
                         f"{far_max:.3g} away): colours the map never produces; cells next to them interpolate to "
                         "false colours", highlight=False, soft_wrap=True)
        if output == "-":  # its summary then goes to stderr, as every export says how far its table strays
            _write_stdout(cube_text(lut, title))
        else:
            write_cube(output, lut, title=title, overwrite=force)
        error_p99, error_max = interpolation_error(lut, fitted)
        outside = float(((lut.table < 0) | (lut.table > 1)).any(-1).mean())
        _emit(as_json, {"lut": output, "size": size, "entries": size**3, "strength": strength, "inverse": inverse,
                        "controls": controls.describe(), "colour_space": table_space,
                        "converted_from": table.converted_from,
                        "domain": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], "fraction_outside_unit_cube": outside,
                        "fraction_outside_by_2_codes": far_share, "max_outside": far_max,
                        "inverse_ill_conditioned": ill_conditioned if inverse else None,
                        "interpolation_error_codes": {"p99": round(error_p99, 3), "max": round(error_max, 3)}},
              [f"wrote {'stdout' if output == '-' else output}: {size}³ .cube LUT, domain [0, 1]³"
               + (f" of {table_space} codes" if table_space else "")
               + (f" (baked from {table.converted_from})" if table.converted_from else "")
               + f", strength {strength:g}" + (", inverse" if inverse else "")
               + "".join(f", {word}" for word in controls_words(controls))
               + f"; interpolated, it follows the map within {error_p99:.2g} code values on 99 % of colours "
               f"(largest sampled: {error_max:.2g})" + ("" if size == 65 or error_p99 <= 1 else "; --size 65 follows it closer")],
              to_stderr=output == "-")


@app.command(cls=_Command)
def info(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="Checkpoint to describe.")],
    as_json: _Json = False,
) -> None:
    """Describe what a checkpoint holds: map, target, training summary, version.

    Examples:
      colorot info model.pt
      colorot info model.pt --json
    """
    with _user_errors():
        ckpt = checkpoint.load(model)
        document = {
            "model": ckpt.model.name,
            "model_config": ckpt.model.config,
            "parameters": checkpoint.count_parameters(ckpt.model),
            "target": ckpt.target.kind,
            "components": _component_count(ckpt.target),
            "train": ckpt.train,
            "preprocess": ckpt.preprocess,
            "colorot_version": ckpt.colorot_version,
            "format_version": checkpoint.FORMAT_VERSION,
        }
        lines = [
            f"model       {ckpt.model.name} ({_key_values(ckpt.model.config)})",
            f"parameters  {document['parameters']}",
            f"target      {ckpt.target.describe()}",
            "training    " + _key_values({k: v for k, v in ckpt.train.items()
                                          if k not in ("source_sha256", "target_sha256", "colour_space_codes",
                                                       "colour_space_icc")}),
            *_hash_lines("source      ", ckpt.train.get("source_sha256")),
            *_hash_lines("target img  ", ckpt.train.get("target_sha256")),
            f"colorot     {ckpt.colorot_version} (checkpoint format {checkpoint.FORMAT_VERSION})",
        ]
        _emit(as_json, document, lines)


def _key_values(values: dict) -> str:
    """``k=v, …``, floats to 6 significant digits (``--json`` keeps them whole)."""
    return ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def _refuse_an_image_name(output: str | Path, instead: str) -> None:
    """ConfigError when a checkpoint or LUT ``output`` is named as an image (``out.png``: most
    likely a mistake for a command that writes images), saying what to do ``instead``."""
    if Path(output).suffix.lower() in {*IMAGE_SUFFIXES, ".gif"}:
        raise ConfigError(f"{output} names an image, but {instead}")


def _hash_lines(label: str, value) -> list[str]:
    """``label sha256 H``; pooled images (a list of hashes) one a line, the label on the first."""
    hashes = value if isinstance(value, list) and value else [value]
    return [f"{label if i == 0 else ' ' * len(label)}sha256 {h}" for i, h in enumerate(hashes)]


@app.command("eval", cls=_Command)
def eval_command(
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="The image the map was applied to.")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="SOURCE after 'colorot apply' (same size).")],
    target: Annotated[Path, typer.Argument(metavar="TARGET", help="The target (style) image.")],
    model: Annotated[Optional[Path], typer.Option(rich_help_panel="Measures", help="Checkpoint that made OUTPUT: adds the minimum Jacobian "
                                                  "eigenvalue and the clipped fraction of its map at full "
                                                  "strength, without colour controls.")] = None,
    directions: Annotated[int, typer.Option(rich_help_panel="Measures", min=1, help="SW2 random directions.")] = metrics.SW2_DIRECTIONS,
    pixels: Annotated[int, typer.Option(rich_help_panel="Measures", min=1, help="SW2 pixels drawn from each image.")] = metrics.SW2_PIXELS,
    w2_pixels: Annotated[int, typer.Option(rich_help_panel="Measures", min=1, max=10_000, help="Pixels per subsample of the W2 estimate "
                                           "(time grows as n³).")] = metrics.W2_ESTIMATE_PIXELS,
    w2_repeats: Annotated[int, typer.Option(rich_help_panel="Measures", min=2, max=100, help="Independent repeats of the W2 estimate (its "
                                            "interval).")] = metrics.W2_REPEATS,
    seed: Annotated[int, typer.Option(rich_help_panel="Measures", min=0, max=2**32 - 1, help="Seed of every random draw.")] = 0,
    max_image_pixels: _MaxImagePixels = None,
    as_json: _Json = False,
) -> None:
    """Measure a transfer: SW2 to the target, RMS displacement, W2 from SOURCE to TARGET; with --model
    also the minimum Jacobian eigenvalue and the fraction of pixels clipped (definitions:
    docs/cli.md, Measuring quality).

    W2 is debiased: in each of R repeats, c = W2²(a, b) between n-pixel subsamples of SOURCE and
    TARGET and f = ½(W2²(a, a′) + W2²(b, b′)) between disjoint subsamples of each image (the noise
    floor: what c reads when W2 = 0); W2 = sqrt(max(0, mean(c − f))). Its 95 % interval runs from
    the lower Student limit of mean(c − f) to the upper one of mean(c) (c is biased upwards), over
    the repeats. RMS/W2 − 1 is 'undefined' when that interval reaches 0.

    Examples:
      colorot eval day.jpg out/day.jpg sunset.jpg
      colorot eval day.jpg out/day.jpg sunset.jpg --model model.pt --json
    """
    with _user_errors():
        _refuse_checkpoints_as_images((source, output, target), "eval compares three images, SOURCE OUTPUT "
                                      "TARGET; give the map with --model")
        loaded = checkpoint.load(model) if model is not None else None
        fitted = loaded.model if loaded is not None else None
        r = metrics.evaluate_files(source, output, target, fitted_map=fitted, max_image_pixels=max_image_pixels,
                                   map_space=profiles.recorded_space(loaded.train) if loaded is not None else None,
                                   directions=directions, pixels=pixels, w2_pixels=w2_pixels,
                                   w2_repeats=w2_repeats, seed=seed)
        absent = "n/a (needs --model)"
        low, high = r["w2_interval"]
        lines = [
            f"SW2 to target        {r['sw2']:.4f}   (source to target: {r['sw2_source']:.4f})",
            f"RMS displacement     {r['rms_displacement']:.4f}",
            f"W2 (debiased)        {r['w2']:.4f}   (95 % interval {low:.4f}–{high:.4f}; noise floor "
            f"{r['w2_floor']:.4f}, raw {r['w2_raw']:.4f}; {r['w2_repeats']} × {r['w2_pixels']} pixels)",
            "RMS/W2 − 1           " + (f"{r['rms_over_w2']:+.2%}" if r["rms_over_w2"] is not None
                                       else "undefined (the W2 interval reaches 0: W2 is within the noise)"),
            "min eigenvalue of J  " + (f"{r['min_jacobian_eigenvalue']:.3g}" if fitted is not None else absent),
            "clipped              " + (f"{r['clipped_fraction']:.2%} of source pixels leave [0, 1] under the map"
                                       if fitted is not None else absent),
        ]
        _emit(as_json, {"source": str(source), "output": str(output), "target": str(target),
                        "model": str(model) if model else None, **r, "directions": directions,
                        "pixels": pixels, "seed": seed, "max_image_pixels": max_image_pixels}, lines)


def _refuse_checkpoints_as_images(paths, hint: str) -> None:
    """ConfigError naming the first of ``paths`` that is a zip archive (what a checkpoint is), with ``hint``."""
    for path in paths:
        try:
            with open(path, "rb") as file:
                if file.read(4) == b"PK\x03\x04":
                    raise ConfigError(f"{path}: a zip archive (a colorot checkpoint?), not an image; {hint}")
        except OSError:  # unreadable: the image reader names it
            continue


def main() -> None:
    """The program: run by :func:`colorot.launcher.main`, the console script's and ``python -m colorot``'s
    entry point.  The process is then colorot's own,
    so ``colorot match`` may run its files in worker processes (:mod:`colorot.workers`), which
    import the program's main module again; the CLI run inside another program (by
    ``typer.testing.CliRunner``, say, from a script without a ``__main__`` guard) keeps to threads."""
    _state["program"] = True
    try:
        app()
    except SystemExit as exit_:
        if exit_.code == 130:  # typer's own exit for a Ctrl-C outside a command's body (parsing its options) says nothing
            _say_interrupted()
        raise
    except OSError as exc:  # outside a command's body: --help, --version or completion into a full or closed stdout
        if isinstance(exc, BrokenPipeError) or _state["debug"]:
            raise
        what = f"{exc.filename}" if exc.filename else "cannot write to stdout"
        stderr.print(f"[bold red]error:[/] {escape(what)} ({escape(exc.strerror or str(exc))})", highlight=False,
                     soft_wrap=True)
        raise SystemExit(1) from None


def _say_interrupted() -> None:
    """``interrupted`` on stderr, once (noted as said once it is)."""
    if not _state["interrupted"]:
        stderr.print("interrupted", highlight=False)
        _state["interrupted"] = True
