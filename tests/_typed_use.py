"""The public API as docs/python.md and the README use it, for a type checker: never run.

tests/test_annotations.py type-checks this file with ``mypy --strict`` (which includes
``--warn-unused-ignores``). Each ``assert_type`` pins what a call gives; each call in
:func:`refused` is one the docs refuse, so its ``type: ignore`` must be used: were the parameter's
type to decay to ``Any``, mypy would report the ignore as unused.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from typing_extensions import assert_type

import colorot
from colorot import ColorTransfer, load, match
from colorot.apply import plan
from colorot.controls import Controls
from colorot.distributed import apply_path
from colorot.lut import Lut
from colorot.matching import Matcher
from colorot.sequence import FrameFit, blend_ridge_maps, blend_weights, blended
from colorot.transforms import ColorAugment


def documented(pixels: np.ndarray, image: PIL.Image.Image, tensor: torch.Tensor, codes: np.ndarray) -> None:
    ct = ColorTransfer(model="ridge", random_state=0, progress=True)
    assert_type(ct.fit("day.jpg", "sunset.jpg"), ColorTransfer)
    ct.fit(["day1.jpg", Path("day2.jpg")], [image, pixels], source_mask=["sky1.png", None])
    ct.fit(tensor, pixels, measure_kl=False)
    assert_type(ct.transform(pixels), np.ndarray)
    for each in (image, Path("storm.jpg"), "storm.jpg", tensor):
        ct.transform(each, strength=0.5, controls=Controls(saturation=0.8, neutral=0.5))
    ct.inverse_transform(pixels)
    for destination in ("model.pt", Path("model.pt"), io.BytesIO()):
        ct.save(destination)
    for source in ("model.pt", Path("model.pt"), b"", bytearray(), memoryview(b""), io.BytesIO()):
        assert_type(load(source), ColorTransfer)
    assert_type(colorot.load("model.pt"), ColorTransfer)
    assert_type(colorot.ColorTransfer(), ColorTransfer)
    assert_type(ct.map_, torch.nn.Module)
    assert_type(ct.as_module(strength=(0.3, 1.0), p=0.8), ColorAugment)
    lut = ct.export_lut("grade.cube", size=33, controls=Controls(keep_luminance=True))
    assert_type(lut, Lut)
    assert_type(lut.apply_codes(codes), np.ndarray)

    assert_type(match("sunset.jpg", ["day.jpg", "storm.jpg"]), list[np.ndarray])
    colorot.match("sunset.jpg", (name for name in ["day.jpg"]), strength=0.5)
    matcher = Matcher("sunset.jpg", random_state=0)
    assert_type(matcher.fit("day.jpg"), ColorTransfer)
    frames = {t: matcher.fit_frame(f"frame{t}.png") for t in range(3)}
    assert_type(frames[0], FrameFit)
    assert_type(blended(frames, 1, 3, 1.0), ColorTransfer)
    indices, weights = blend_weights(frames, 1, 3, 1.0)
    maps = [frames[int(t)].estimator.ridge_parameters_ for t in indices]
    blend_ridge_maps([each for each in maps if each is not None], weights)

    augment = ColorAugment.from_checkpoint("model.pt", strength=(0.3, 1.0), p=0.8)
    augment(tensor)
    ColorAugment.from_checkpoint(bytearray(b""))
    assert_type(apply_path(b"", "a.png", Path("b.png"), strength=0.8), str)
    plan(["samples", Path("more")], Path("out"), recursive=True)


def refused(ct: ColorTransfer) -> None:
    ct.transform(b"raw bytes")  # type: ignore[arg-type]
    ct.transform(12)  # type: ignore[arg-type]
    ct.fit(io.BytesIO(), "target.jpg")  # type: ignore[arg-type]
    ct.fit("source.jpg", "target.jpg", source_mask=3.5)  # type: ignore[arg-type]
    load(12)  # type: ignore[arg-type]
