"""Process-wide state that colorot changes for a while, from several threads at once: Pillow's
decompression-bomb check, torch's and BLAS's thread counts, the warning filters, and torch's import."""

from __future__ import annotations

import io
import sys
import threading
import types
import warnings

import numpy as np
import pytest
from PIL import Image as PILImage

from colorot.errors import ImageReadError


def _in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


def test_a_thread_that_lifts_the_pixel_limit_lifts_it_for_itself_alone(monkeypatch) -> None:
    """Lifting it set Pillow's global MAX_IMAGE_PIXELS to None for the whole decode: an image over
    the limit read meanwhile in another thread (the user's own Pillow work too) was let through."""
    from colorot.imageio import _pillow_pixel_limit_lifted, decode_image

    buffer = io.BytesIO()
    PILImage.new("RGB", (120, 100)).save(buffer, format="PNG")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 5_000)  # 12 000 pixels: more than twice over
    inside, done = threading.Event(), threading.Event()

    def lifted() -> None:
        with _pillow_pixel_limit_lifted(True):
            inside.set()
            done.wait(30)

    thread = _in_thread(lifted)
    try:
        inside.wait(30)
        with pytest.raises(ImageReadError, match="limit"):
            decode_image(buffer.getvalue(), name="big.png")
        with pytest.raises(PILImage.DecompressionBombError):
            PILImage.open(io.BytesIO(buffer.getvalue()))
        assert PILImage.MAX_IMAGE_PIXELS == 5_000
    finally:
        done.set()
        thread.join()
    assert decode_image(buffer.getvalue(), name="big.png", max_pixels=12_000).codes.shape == (100, 120, 3)


def test_one_torch_thread_holds_in_each_thread_that_holds_it_and_puts_back_that_thread_s_own():
    """torch's thread count belongs to each thread: a hold counted across threads set one thread
    for the first holder alone, and put back one thread's count in another."""
    import torch

    from colorot.thread_counts import torch_threads_held

    a_inside, b_done = threading.Event(), threading.Event()
    seen = {}

    def first() -> None:
        torch.set_num_threads(3)
        with torch_threads_held(1):
            a_inside.set()
            b_done.wait(30)
            seen["a inside, after b"] = torch.get_num_threads()
        seen["a after"] = torch.get_num_threads()

    def second() -> None:
        torch.set_num_threads(2)
        a_inside.wait(30)
        with torch_threads_held(1):
            seen["b inside"] = torch.get_num_threads()
        seen["b after"] = torch.get_num_threads()
        b_done.set()

    for thread in [_in_thread(first), _in_thread(second)]:
        thread.join()
    assert seen == {"b inside": 1, "b after": 2, "a inside, after b": 1, "a after": 3}


def test_a_thread_started_during_another_s_torch_hold_leaves_later_threads_their_count() -> None:
    """torch.set_num_threads also sets the count later threads take: a thread started while another
    held one thread found 1 and put back 1, and every thread started after ran on one thread."""
    import torch

    from colorot.thread_counts import torch_threads_held

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        a_inside, b_inside, a_out = threading.Event(), threading.Event(), threading.Event()
        seen = {}

        def first() -> None:
            with torch_threads_held(1):
                a_inside.set()
                b_inside.wait(30)
            a_out.set()

        def second() -> None:
            a_inside.wait(30)
            with torch_threads_held(1):
                b_inside.set()
                a_out.wait(30)
                seen["b inside, a out"] = torch.get_num_threads()
            seen["b after"] = torch.get_num_threads()

        for thread in [_in_thread(first), _in_thread(second)]:
            thread.join()
        later = []
        _in_thread(lambda: later.append(torch.get_num_threads())).join()
        assert seen == {"b inside, a out": 1, "b after": 3} and later == [3] and torch.get_num_threads() == 3
        with torch_threads_held(1):  # nested: the outer hold's count, then the thread's own
            with torch_threads_held(2):
                assert torch.get_num_threads() == 2
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with pytest.raises(RuntimeError):  # a count torch refuses leaves no hold open behind it
            with torch_threads_held(0):
                pass
        from colorot.thread_counts import _torch_holds

        assert not _torch_holds and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


#: A fresh process's prologue: BLAS on two threads, ``count()`` its count now.
_BLAS_ON_TWO = """
import threading
import numpy  # loads BLAS
from threadpoolctl import ThreadpoolController

blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
if not blas:
    print("no BLAS")
    raise SystemExit
count = blas[0].get_num_threads
# From a thread: once the main thread has set it, OpenBLAS ignores other threads' settings.
setter = threading.Thread(target=lambda: blas[0].set_num_threads(2))
setter.start()
setter.join()
"""

_BLAS_HOLDS = _BLAS_ON_TWO + """
from colorot.thread_counts import one_library_thread

before = count()
a_inside, b_inside, a_out = threading.Event(), threading.Event(), threading.Event()
seen = []

def first():
    with one_library_thread():
        a_inside.set()
        b_inside.wait(30)
    a_out.set()

def second():
    a_inside.wait(30)
    with one_library_thread():
        b_inside.set()
        a_out.wait(30)
        seen.append(count())

threads = [threading.Thread(target=first), threading.Thread(target=second)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print([before, count(), *seen])
"""


def test_blas_stays_on_one_thread_until_the_last_holder_leaves() -> None:
    """BLAS's count is the process's: each thread put back what it found, so the first out gave the
    second's fit its threads back mid-fit, and the last out left the process on one thread for good
    (concurrent fits: later numpy work ran on one thread).  In a fresh process: the suite's own set
    its count from the main thread, after which OpenBLAS takes no other thread's."""
    from _fresh_process import last_line_of

    outcome = last_line_of(_BLAS_HOLDS)
    if outcome == "no BLAS" or not outcome.startswith("[2,"):  # a BLAS that takes no count from a thread
        pytest.skip(f"{outcome}: nothing to see")
    assert outcome == "[2, 2, 1]"  # two threads again after; one inside the second hold once the first left


_NETWORK_FIT_BLAS = _BLAS_ON_TWO + """
import numpy as np
from colorot import ColorTransfer, mgn_solver

before, seen, fit = count(), [], mgn_solver.fit_network_kl

def recorded(*args, **kwargs):
    seen.append(count())
    return fit(*args, **kwargs)

mgn_solver.fit_network_kl = recorded
pixels = (np.random.default_rng(0).random((20, 20, 3)) * 255).astype(np.uint8)
ColorTransfer(model="cmgn", steps=1, max_pixels=200).fit(pixels, pixels[::-1], measure_kl=False)
print([before, *seen, count()])
"""


def test_a_network_s_kl_fit_holds_blas_to_one_thread() -> None:
    """The C-MGN's and M-MGN's KL solver runs on torch's threads; the numpy BLAS threads its sliced
    goal woke spun beside them on the same cores, and a fit took twice its time (E68: 8.4 s against
    4.4 s for a 1920×1200 pair on 2 cores).  BLAS is held to one thread for the fit, and given back."""
    from _fresh_process import last_line_of

    outcome = last_line_of(_NETWORK_FIT_BLAS)
    if outcome == "no BLAS" or not outcome.startswith("[2,"):
        pytest.skip(f"{outcome}: nothing to see")
    assert outcome == "[2, 1, 2]"


def test_colorot_s_warning_blocks_never_overlap_across_threads(tmp_path, monkeypatch) -> None:
    """catch_warnings saves and restores the process's filters: a checkpoint's load and an image's
    read in two threads restored each other's, which could leave every later warning ignored."""
    import time

    import colorot
    from colorot.imageio import read_image

    colorot.ColorTransfer(model="affine").fit(np.random.default_rng(0).random((8, 8, 3)),
                                               np.random.default_rng(1).random((8, 8, 3))).save(tmp_path / "m.pt")
    PILImage.new("RGB", (8, 8)).save(tmp_path / "a.png")
    inside, most = [], []
    count = threading.Lock()
    real = warnings.catch_warnings

    class Counted(real):
        def __enter__(self):
            with count:
                inside.append(1)
                most.append(len(inside))
            time.sleep(0.002)
            return super().__enter__()

        def __exit__(self, *exc):
            with count:
                inside.pop()
            return super().__exit__(*exc)

    monkeypatch.setattr(warnings, "catch_warnings", Counted)
    threads = [_in_thread(lambda: [colorot.load(tmp_path / "m.pt") for _ in range(20)]),
               _in_thread(lambda: [read_image(tmp_path / "a.png") for _ in range(40)])]
    for thread in threads:
        thread.join()
    assert most and max(most) == 1


def test_a_map_applies_while_another_thread_imports_torch(monkeypatch) -> None:
    """While torch is being imported, sys.modules holds it before its Tensor: the check whether an
    image is a tensor raised AttributeError ("partially initialized module 'torch'")."""
    from colorot.transfer import ColorTransfer

    fitted = ColorTransfer(solver="sliced", steps=2).fit(np.random.default_rng(0).random((8, 8, 3)),
                                                         np.random.default_rng(1).random((8, 8, 3)))
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))  # as a half-done import leaves it
    assert fitted.transform(np.full((2, 2, 3), 0.5)).shape == (2, 2, 3)
