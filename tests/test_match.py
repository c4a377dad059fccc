"""colorot.match: each image its own map onto one reference fitted once."""

import numpy as np
import pytest

import colorot
from colorot import distributions
from colorot.controls import Controls, luma
from colorot.errors import ConfigError
from colorot.matching import Matcher, match
from colorot.metrics import sliced_w2
from colorot.transfer import ColorTransfer

FAST = {"steps": 3}


def image(seed: int, tint=(1.0, 1.0, 1.0), size=24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.random((size, size, 3)) * np.asarray(tint), 0, 1).astype(np.float32)


def test_the_reference_is_fitted_once(monkeypatch):
    calls = []
    real = distributions.fit_target
    monkeypatch.setattr("colorot.transfer.fit_target", lambda *a, **k: calls.append(1) or real(*a, **k))
    matcher = Matcher(image(0, (1.0, 0.6, 0.3)), **FAST)
    for seed in (1, 2, 3):
        matcher.fit(image(seed))
    assert len(calls) == 1


def test_the_lighter_schedule_solves_the_sliced_start_in_fewer_iterations(monkeypatch):
    """E53: 100 FISTA iterations a solve instead of 200, for the default map without --steps (not for
    a sequence's frames)."""
    from colorot import sliced
    from colorot.matching import MATCH_SOLVE_ITERATIONS

    seen = []
    real = sliced.nonnegative_least_squares
    monkeypatch.setattr(sliced, "nonnegative_least_squares", lambda *args: seen.append(args[5]) or real(*args))
    Matcher(image(0)).fit(image(1))
    assert set(seen) == {MATCH_SOLVE_ITERATIONS} and MATCH_SOLVE_ITERATIONS < sliced.NNLS_ITERATIONS
    seen.clear()
    Matcher(image(0), **FAST).fit(image(1))  # steps given: colorot fit's schedule
    assert set(seen) == {sliced.NNLS_ITERATIONS}
    for fit in (lambda: ColorTransfer().fit(image(1), image(0)), lambda: Matcher(image(0)).fit_frame(image(1))):
        seen.clear()
        fit()  # colorot fit, and a frame of --sequence
        assert set(seen) == {sliced.NNLS_ITERATIONS}


def test_each_image_gets_its_own_map_towards_the_reference():
    reference = image(0, (1.0, 0.6, 0.3))
    dark, bright = image(1, (0.3, 0.3, 0.3)), image(2)
    outputs = match(reference, [dark, bright], **FAST)
    assert [o.shape for o in outputs] == [dark.shape, bright.shape]
    one_map = ColorTransfer(**FAST).fit(dark, reference)  # the daylight map applied to the other
    flat = reference.reshape(-1, 3)
    assert sliced_w2(outputs[1].reshape(-1, 3), flat) < 0.5 * sliced_w2(one_map.transform(bright).reshape(-1, 3), flat)
    assert sliced_w2(outputs[0].reshape(-1, 3), flat) < sliced_w2(dark.reshape(-1, 3), flat)


def test_match_is_fit_then_transform_with_strength_and_controls():
    reference, source = image(0, (1.0, 0.6, 0.3)), image(1)
    controls = Controls(keep_luminance=True)
    [out] = match(reference, [source], strength=0.5, controls=controls, **FAST)
    expected = ColorTransfer(**FAST).fit(source, reference).transform(source, strength=0.5, controls=controls)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(luma(out), luma(source), atol=1e-5)


def test_a_reference_with_other_settings_is_refused():
    reference = ColorTransfer(n_components=2, **FAST).fit_reference(image(0))
    with pytest.raises(ConfigError, match="Reference was fitted with"):
        ColorTransfer(n_components=3, **FAST).fit(image(1), reference)


def test_one_image_instead_of_a_list_is_refused():
    """An array was taken for a list of its rows, a path for a list of its characters."""
    import torch

    for one in ("samples/day.jpg", np.zeros((4, 4, 3), np.uint8), torch.zeros((4, 4, 3), dtype=torch.uint8)):
        with pytest.raises(ConfigError, match="list of images"):
            match(np.zeros((4, 4, 3), np.uint8), one)


def test_controls_and_strength_are_checked_before_any_fit(monkeypatch):
    """A dict for controls failed with an AttributeError after every image's map was fitted."""
    monkeypatch.setattr(Matcher, "__init__", lambda *a, **k: pytest.fail("fitted before the check"))
    for options, message in (({"controls": {"saturation": 0.5}}, "controls must be a colorot.controls.Controls"),
                             ({"strength": 1.5}, r"strength \(--strength\) must be between 0 and 1")):
        with pytest.raises(ConfigError, match=message):
            match(image(0), [image(1)], **options)
        with pytest.raises(ConfigError, match=message):
            match(image(0), [image(1), image(2)], smooth=1.0, **options)


def test_any_iterable_of_images_is_matched():
    """With smooth, a generator was used up by the fits and [] came back."""
    rng = np.random.default_rng(0)
    frames = [rng.random((6, 8, 3)).astype(np.float32) for _ in range(3)]
    reference = rng.random((6, 8, 3)).astype(np.float32) * 0.5
    from_list = match(reference, frames, smooth=1, steps=2)
    from_generator = match(reference, (frame for frame in frames), smooth=1, steps=2)
    assert len(from_generator) == 3
    for a, b in zip(from_list, from_generator):
        np.testing.assert_array_equal(a, b)


def test_a_path_is_read_once_and_matched_as_fit_then_transform_of_it(tmp_path, monkeypatch):
    """match read each path twice (its fit, then transform), so an animation's warning came twice.
    It gives the first frame, fitted alone (Matcher.fit of the path fits every frame, as colorot
    match does for the animation it writes)."""
    from PIL import Image

    from colorot import imageio
    from colorot.errors import ImageMetadataWarning

    path = tmp_path / "animated.png"
    first, second = (Image.fromarray(np.round(image(seed) * 255).astype(np.uint8)) for seed in (1, 2))
    first.save(path, save_all=True, append_images=[second])
    first.save(tmp_path / "first.png")
    reference = image(0, (1.0, 0.6, 0.3))
    expected = Matcher(reference, **FAST).fit(tmp_path / "first.png").transform(tmp_path / "first.png", strength=0.8)
    reads = []
    real = imageio.read_file
    monkeypatch.setattr(imageio, "read_file", lambda name: reads.append(name) or real(name))
    with pytest.warns(ImageMetadataWarning) as caught:
        [out] = match(reference, [path], strength=0.8, **FAST)
    assert reads == [path]
    assert [str(w.message) for w in caught].count(str(caught[0].message)) == 1 and "2 frames" in str(caught[0].message)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("params", [{"model": "cmgn", "steps": 2}, {"solver": "adam", "steps": 3}])
def test_a_network_map_is_fitted_on_one_torch_thread_whatever_torch_was_set_to(monkeypatch, params):
    """`colorot match --model cmgn` fitted on every core at --jobs 1 and on one thread at --jobs 2:
    maps up to 9 code values apart, and colorot.match agreed with the first only."""
    import torch

    seen = []
    real = ColorTransfer._fit
    monkeypatch.setattr(ColorTransfer, "_fit", lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    found = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        match(image(0, (1.0, 0.6, 0.3)), [image(1), image(2)], **params)
        assert torch.get_num_threads() == 2  # put back
    finally:
        torch.set_num_threads(found)
    assert seen == [1, 1]  # each image's fit


def test_match_is_exported_at_the_top():
    assert colorot.match is match


def test_a_matched_file_is_what_the_map_applied_through_torch_writes(tmp_path):
    """match writes a ridge map through its parameters' colour table, without torch: the same file
    as through the loaded module (the table ``colorot apply`` builds for it)."""
    from PIL import Image

    from colorot import apply
    from colorot.matching import write_matched

    reference, source = image(0, (1.0, 0.6, 0.3), size=32), image(1, size=32)
    Image.fromarray(np.round(source * 255).astype(np.uint8)).save(tmp_path / "in.png")
    estimator = Matcher(reference, **FAST).fit(tmp_path / "in.png", measure_kl=False)
    controls = Controls(saturation=0.8, neutral=0.5)
    write_matched(estimator, tmp_path / "in.png", tmp_path / "table.png", strength=0.7, controls=controls)
    fitted, table = apply.prepare_fitted(estimator.map_, strength=0.7, controls=controls)
    apply.apply_to_file(fitted, tmp_path / "in.png", tmp_path / "torch.png", table=table)
    with Image.open(tmp_path / "table.png") as a, Image.open(tmp_path / "torch.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_kl_is_measured_for_the_maps_that_are_kept(tmp_path):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(np.round(image(1) * 255).astype(np.uint8)).save(source)
    matcher = Matcher(image(0, (1.0, 0.6, 0.3)), **FAST)
    matcher.match_file(source, tmp_path / "out.png", save_map=tmp_path / "maps" / "in.pt")
    assert colorot.load(tmp_path / "maps" / "in.pt").train_info_["kl_nats"] is not None
    assert matcher.fit(source, measure_kl=False).train_info_["kl_nats"] is None
    assert matcher.fit(source).train_info_["kl_nats"] is not None


def test_the_default_fits_of_a_match_run_the_lighter_schedule():
    from colorot.matching import MATCH_KL_ITERATIONS, MATCH_PIXELS

    reference = image(0, (1.0, 0.6, 0.3))
    fitted = Matcher(reference).fit(image(1), measure_kl=False)
    assert fitted.get_params()["steps"] == MATCH_KL_ITERATIONS and fitted.get_params()["max_pixels"] == MATCH_PIXELS
    assert fitted.train_info_["steps"] == MATCH_KL_ITERATIONS
    assert Matcher(reference, steps=2, max_pixels=300).params["steps"] == 2
    assert Matcher(reference, steps=2, max_pixels=300).params["max_pixels"] == 300
    assert Matcher(reference, max_pixels=300).params == {"steps": MATCH_KL_ITERATIONS, "max_pixels": 300}
    # given steps, colorot fit's schedule: `colorot match --steps 20` (no --max-pixels) fits as `colorot fit`
    assert "max_pixels" not in Matcher(reference, steps=20).params
    again = Matcher(reference, steps=3).fit(image(1), measure_kl=False)
    assert again.get_params()["max_pixels"] == ColorTransfer().get_params()["max_pixels"]
    for other in ({"solver": "sliced", "steps": None}, {"model": "affine"}):
        assert "max_pixels" not in Matcher(reference, **other).params


def test_a_large_reference_is_thinned_once_and_its_colour_order_found_once(monkeypatch):
    """A reference of at least 2·ORDERED_PIXELS (here 2·100) keeps one thinning of its pixels (each
    fit's subsample is drawn from it; its distribution is fitted on them all, as fit's), whose colour
    order is found once for every fit onto it; the caches are not pickled (a worker's copy)."""
    import pickle

    from colorot import sampling, transfer

    monkeypatch.setattr(sampling, "ORDERED_PIXELS", 100)
    target = image(0, (1.0, 0.6, 0.3), size=40)  # 1600 pixels: every 16th kept
    from_all = ColorTransfer(steps=3, max_pixels=50).fit(image(1), target).target_dist_
    sorted_rows = []
    real = sampling.colour_order
    monkeypatch.setattr(transfer, "colour_order", lambda rows: sorted_rows.append(len(rows)) or real(rows))
    matcher = Matcher(target, steps=3, max_pixels=50)
    kept = matcher.reference.pixels
    assert 100 <= len(kept) < 200
    every = {row.tobytes() for row in target.reshape(-1, 3)}
    assert all(row.tobytes() in every for row in kept)
    assert np.array_equal(matcher.reference.distribution.means, from_all.means)
    first = matcher.fit(image(1)).transform(image(3))
    matcher.fit(image(2))
    assert sorted_rows.count(len(kept)) == 1
    copy = pickle.loads(pickle.dumps(matcher))
    assert copy.reference._order == [] and np.array_equal(copy.reference.pixels, kept)
    assert np.array_equal(copy.fit(image(1)).transform(image(3)), first)


def test_a_thinned_reference_refuses_a_fit_on_more_pixels_than_it_was_thinned_for(monkeypatch):
    """Its fits would draw from fewer pixels than asked, without a word (the reviewer's catch)."""
    from colorot import sampling

    monkeypatch.setattr(sampling, "ORDERED_PIXELS", 100)
    target = image(0, (1.0, 0.6, 0.3), size=40)  # 1600 pixels: thinned for max_pixels 50
    reference = ColorTransfer(steps=3, max_pixels=50).fit_reference(target)
    assert reference.thinned_for == 50
    ColorTransfer(steps=3, max_pixels=50).fit(image(1), reference)
    with pytest.raises(ConfigError, match="thinned for max_pixels=50"):
        ColorTransfer(steps=3, max_pixels=300).fit(image(1), reference)
    assert ColorTransfer(steps=3, max_pixels=50).fit_reference(image(0, size=12)).thinned_for is None  # 144: all kept
