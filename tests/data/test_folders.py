"""Folders of image files in MVTec AD's layout: greyscale and colour, 8- and 16-bit, mixed
sizes, masks, and the one-line messages of bad input."""
import numpy as np
import pytest
from PIL import Image

from vae_anomaly.data.folders import image_files, infer_channels, load_folder, read_images
from vae_anomaly.errors import UserError


def save(path, pixels, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode=mode).save(path)


def grey(value, shape=(8, 8)):
    return np.full(shape, value, dtype=np.uint8)


def layout(root, suffix=".png", masks=True, rgb=False):
    """train/good 3 images, test/good 2, test/crack 2 (with masks), test/hole 1 (with a mask)."""
    def image(value):
        return np.stack([grey(value)] * 3, axis=-1) if rgb else grey(value)

    for i in range(3):
        save(root / f"train/good/{i}{suffix}", image(10 * i))
    for i in range(2):
        save(root / f"test/good/{i}{suffix}", image(50))
        save(root / f"test/crack/{i}{suffix}", image(200))
    save(root / f"test/hole/0{suffix}", image(100))
    if masks:
        mask = np.zeros((8, 8), np.uint8)
        mask[:4, :2] = 255
        for i in range(2):
            save(root / f"ground_truth/crack/{i}_mask.png", mask)
        save(root / "ground_truth/hole/0.png", mask)  # the mask named as its image works too


def test_a_greyscale_folder_reads_in_sorted_order_with_masks_resized(tmp_path):
    layout(tmp_path)
    (tmp_path / "train/good/notes.txt").write_text("ignored")
    got = load_folder(tmp_path, (4, 4))
    assert got.channels == 1 and got.train.shape == (3, 1, 4, 4) and got.train.dtype == np.float32
    assert got.train_files == ["train/good/0.png", "train/good/1.png", "train/good/2.png"]
    assert got.test_kind.tolist() == ["normal", "normal", "crack", "crack", "hole"]
    assert got.test_files[2] == "test/crack/0.png"
    np.testing.assert_allclose(got.test[2], 200 / 255, rtol=1e-6)
    assert got.mask_known.all()
    expected = np.zeros((4, 4), bool)
    expected[:2, :1] = True  # the 4x2 white corner of 8x8, at half size
    np.testing.assert_array_equal(got.test_mask[2], expected)
    assert not got.test_mask[:2].any()


def test_a_colour_jpeg_folder_without_masks_infers_three_channels(tmp_path):
    layout(tmp_path, ".jpg", masks=False, rgb=True)
    save(tmp_path / "train/good/9.jpg", np.dstack([grey(200), grey(0), grey(0)]))  # one image in colour
    got = load_folder(tmp_path, (8, 8))
    assert got.channels == 3 and got.test.shape == (5, 3, 8, 8)
    assert got.mask_known.tolist() == [True, True, False, False, False]
    assert load_folder(tmp_path, (8, 8), channels=1).train.shape == (4, 1, 8, 8)


def test_greyscale_read_as_rgb_and_mixed_sizes_resized(tmp_path):
    layout(tmp_path)
    save(tmp_path / "train/good/big.png", grey(30, (20, 12)))
    got = load_folder(tmp_path, (6, 5), channels=3)
    assert got.train.shape == (4, 3, 6, 5)
    np.testing.assert_allclose(got.train[3], 30 / 255, rtol=1e-6)


def test_16_bit_bmp_and_tiff_images_read_without_clipping(tmp_path):
    save(tmp_path / "a.png", np.full((4, 4), 40000, dtype=np.uint16))  # Pillow: mode I;16
    save(tmp_path / "b.bmp", grey(255, (4, 4)))
    save(tmp_path / "c.tif", grey(51, (4, 4)))
    files = image_files(tmp_path)
    assert [f.name for f in files] == ["a.png", "b.bmp", "c.tif"]
    assert infer_channels(files) == 1
    x = read_images(files, (4, 4), 1)
    np.testing.assert_allclose(x[:, 0, 0, 0], [40000 / 65535, 1.0, 0.2], rtol=1e-5)


def test_a_glob_and_a_single_file(tmp_path):
    layout(tmp_path)
    assert len(image_files(str(tmp_path / "test/*/*.png"))) == 5
    assert image_files(tmp_path / "test/hole/0.png") == [tmp_path / "test/hole/0.png"]
    with pytest.raises(UserError, match="holds no .png"):
        image_files(str(tmp_path / "test/*/*.jpg"))


@pytest.mark.parametrize("breaks, message", [
    (lambda r: (r / "test/crack/1.png").write_bytes(b"not an image"), r"test/crack/1.png is not a readable image"),
    (lambda r: save(r / "ground_truth/crack/7_mask.png", grey(255)), r"7_mask.png has no image .*crack/7"),
    (lambda r: (r / "ground_truth/crack/1_mask.png").unlink(), r"test/crack/1.png has no mask"),
    (lambda r: [p.unlink() for p in (r / "train/good").iterdir()], r"train/good holds no .png"),
    (lambda r: save(r / "ground_truth/dent/0_mask.png", grey(255)), r"ground_truth/dent has no test folder"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, breaks, message):
    layout(tmp_path)
    breaks(tmp_path)
    with pytest.raises(UserError, match=message) as err:
        load_folder(tmp_path, (4, 4))
    assert "\n" not in str(err.value)


def test_a_folder_without_train_good_or_a_bad_channel_count(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        load_folder(tmp_path / "missing", (4, 4))
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="has no train/good/ folder"):
        load_folder(tmp_path, (4, 4))
    with pytest.raises(UserError, match="data.folder.channels = 2"):
        load_folder(tmp_path, (4, 4), channels=2)
