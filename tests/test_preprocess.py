import cv2
import numpy as np
import pytest

from tledge.card import ModelCard
from tledge.preprocess import decode_image, load_image, preprocess_batch, preprocess_file, preprocess_rgb, resize_rgb

CARD = ModelCard(arch="mobilenet_v2", class_names=["a", "b"], input_size=(32, 40))


def test_preprocess_is_rgb_scaled_and_normalised(tmp_path):
    bgr = np.zeros((20, 20, 3), np.uint8)
    bgr[:, :, 2] = 255  # pure red in BGR
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    tensor = preprocess_file(path, CARD)
    assert tensor.shape == (3, 32, 40) and tensor.dtype == np.float32
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    assert tensor[:, 5, 5] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_odd_formats_become_rgb8(tmp_path, kind):
    if kind == "gray":
        img = np.full((10, 12), 128, np.uint8)
    elif kind == "rgba":
        img = np.dstack([np.full((10, 12), v, np.uint8) for v in (10, 20, 30, 255)])
    else:
        img = np.full((10, 12, 3), 65535, np.uint16)
    path = tmp_path / f"{kind}.png"
    cv2.imwrite(str(path), img)
    rgb = load_image(path)
    assert rgb.shape == (10, 12, 3) and rgb.dtype == np.uint8
    if kind == "rgba":
        assert rgb[0, 0].tolist() == [30, 20, 10]  # BGR(A) on disk → RGB
    if kind == "16bit":
        assert rgb.max() == 255


def test_unreadable_input_is_none(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert load_image(bad) is None
    assert load_image(tmp_path / "missing.jpg") is None
    assert decode_image(b"") is None


def test_center_crop_policy_keeps_the_middle():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 75:125] = 255  # a white band in the middle
    out = resize_rgb(img, (64, 64), "center_crop")
    assert out.shape == (64, 64, 3)
    assert out[32, 32].tolist() == [255, 255, 255] and out[32, 0].tolist() == [0, 0, 0]


def test_batch_matches_an_independent_reference_in_order():
    """Each batch row equals cv2.resize (INTER_AREA shrinking, INTER_LINEAR enlarging, none at size) then
    (x/255 - mean)/std in CHW, computed here without tledge's functions, in the input order."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), rng.integers(0, 256, (16, 20, 3), dtype=np.uint8),
              np.full((32, 40, 3), 200, np.uint8)]
    batch = preprocess_batch(images, CARD)
    assert batch.shape == (3, 3, 32, 40) and batch.dtype == np.float32
    mean, std = np.array(CARD.mean, np.float32), np.array(CARD.std, np.float32)
    for i, (image, interpolation) in enumerate(zip(images, (cv2.INTER_AREA, cv2.INTER_LINEAR, None))):
        resized = image if interpolation is None else cv2.resize(image, (40, 32), interpolation=interpolation)
        expected = ((resized.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
        np.testing.assert_allclose(batch[i], expected, atol=2e-5)
    assert batch[2, :, 7, 9] == pytest.approx((200 / 255 - mean) / std, rel=1e-5)


def test_fast_normalisation_matches_numpy_reference():
    from tledge.preprocess import normalize_to_chw, normalize_to_chw_numpy

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    fast = normalize_to_chw(image, CARD.mean, CARD.std)
    assert fast.shape == (3, 37, 53) and fast.dtype == np.float32 and fast.flags.c_contiguous
    np.testing.assert_allclose(fast, normalize_to_chw_numpy(image, CARD.mean, CARD.std), atol=2e-6)


def _photo_like(height: int, width: int) -> np.ndarray:
    """Smooth colour regions plus grain: enough high frequencies for JPEG scaling to make a difference."""
    rng = np.random.default_rng(1)
    base = cv2.resize(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(base.astype(np.int16) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("policy, factor", [("stretch", 4), ("center_crop", 2)])
def test_reduced_jpeg_decode_is_close_to_full_decode_then_resize(policy, factor):
    """A 1280x960 JPEG for a 224 px model: DCT-scaled decode (1/4, or 1/2 when center crop needs 256 px), then
    the same resize, differs from full decode + resize by about 1-2 grey levels on average on this smooth
    image (measured 1.5 and 0.8, max 10; ~5 on detailed mosaics, benchmarks/fast_decode.py): close, not
    equal, which is why it is opt-in (training decodes in full)."""
    from tledge.preprocess import decode_min_size

    ok, data = cv2.imencode(".jpg", _photo_like(960, 1280), [cv2.IMWRITE_JPEG_QUALITY, 90])
    card = ModelCard("mobilenet_v2", ["a", "b"], input_size=(224, 224), resize=policy)
    min_size = decode_min_size(card)
    assert min_size == ((224, 224) if policy == "stretch" else (256, 256))
    full, reduced = decode_image(data), decode_image(data, min_size)
    assert full.shape == (960, 1280, 3) and reduced.shape == (960 // factor, 1280 // factor, 3)
    diff = np.abs(resize_rgb(full, (224, 224), policy).astype(int) - resize_rgb(reduced, (224, 224), policy))
    assert diff.mean() < 3 and diff.max() <= 24  # a wrong channel order or crop would be ~50 on average
    assert np.abs(preprocess_rgb(full, card) - preprocess_rgb(reduced, card)).mean() < 0.05


def test_reduced_decode_leaves_small_jpegs_and_other_formats_alone():
    from tledge.preprocess import jpeg_size

    image = _photo_like(300, 400)
    ok, jpeg = cv2.imencode(".jpg", image)
    ok, png = cv2.imencode(".png", image)
    assert jpeg_size(jpeg) == (300, 400) and jpeg_size(png) is None and jpeg_size(np.zeros(0, np.uint8)) is None
    for data in (jpeg, png):  # under twice 224 in height: full decode, bit for bit
        np.testing.assert_array_equal(decode_image(data, (224, 224)), decode_image(data))
    assert decode_image(jpeg, (100, 100)).shape == (150, 200, 3)
    assert decode_image(b"\xff\xd8 not really a jpeg", (10, 10)) is None


def test_load_batch_leaves_out_what_does_not_decode_and_equals_preprocess_batch(tmp_path):
    import cv2

    from tledge.card import ModelCard
    from tledge.preprocess import load_batch, load_image, preprocess_batch

    card = ModelCard("mobilenet_v2", ["a", "b"], input_size=(40, 32))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (50 + i, 60, 3), dtype=np.uint8))
        paths.append(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    batch, kept = load_batch([paths[0], broken, paths[1], paths[2]], card)
    assert kept == [0, 2, 3] and batch.shape == (3, 3, 40, 32) and batch.dtype == np.float32
    assert np.array_equal(batch, preprocess_batch([load_image(p) for p in paths], card))
    empty, none_kept = load_batch([broken], card)
    assert none_kept == [] and empty.shape == (0, 3, 40, 32)
