"""Data sources and anomaly protocols, on tiny idx files (support.write_raw_files, never a download)."""
import numpy as np
import pytest
import yaml
from support import N_TEST_PER_CLASS, N_TRAIN_PER_CLASS, PIXEL_STEP, SIDE, write_raw_files
from torchvision import datasets as tv_datasets

from vae_anomaly.data import images as image_sources
from vae_anomaly.data.sources import make_splits
from vae_anomaly.data.splits import NORMAL, OUTLIER
from vae_anomaly.data.synthetic import make_synthetic
from vae_anomaly.errors import ParamsError, UserError
from vae_anomaly.params import N_CLASSES, validate


def classes_of(images: np.ndarray) -> np.ndarray:
    return np.rint(images[:, 0, 0, 0] * 255 / PIXEL_STEP).astype(int)


def image_params(params, source, root, protocol="held_out", classes=(1,)):
    params["data"].update(source=source, root=str(root), download=False, protocol=protocol,
                          classes=list(classes), val_fraction=0.2)
    return validate(params)["data"]


# --- MNIST / Fashion-MNIST from local files --------------------------------------------------

def test_tiny_files_load_as_unit_images(tiny_root):
    images = image_sources.load_torchvision("fashion_mnist", str(tiny_root), allow_download=False)
    assert images.train_images.shape == (10 * N_TRAIN_PER_CLASS, 1, SIDE, SIDE)
    assert images.test_images.shape == (10 * N_TEST_PER_CLASS, 1, SIDE, SIDE)
    assert images.train_images.dtype == np.float32
    assert images.train_images.min() == 0 and images.train_images.max() == pytest.approx(225 / 255)
    np.testing.assert_array_equal(classes_of(images.train_images), images.train_labels)
    assert images.class_names == tv_datasets.FashionMNIST.classes


def test_official_md5_mismatch_names_file_expected_md5_and_fixes(tmp_path, monkeypatch):
    monkeypatch.delenv(image_sources.DATA_ROOT_ENV, raising=False)
    write_raw_files(tmp_path, tv_datasets.FashionMNIST)  # tiny files: not the official md5s
    with pytest.raises(UserError) as err:
        image_sources.load_torchvision("fashion_mnist", str(tmp_path), allow_download=False)
    message = str(err.value)
    filename, official_md5 = tv_datasets.FashionMNIST.resources[0]
    assert str(tmp_path / "FashionMNIST" / "raw" / filename) in message
    assert f"md5 {official_md5}" in message
    for remedy in ("data.root", image_sources.DATA_ROOT_ENV, "data.download"):
        assert remedy in message


def test_corrupt_and_missing_files_are_named(tiny_root):
    raw = tiny_root / "MNIST" / "raw"
    labels = raw / "t10k-labels-idx1-ubyte.gz"
    expected = dict(tv_datasets.MNIST.resources)[labels.name]
    labels.write_bytes(labels.read_bytes()[:-1])
    with pytest.raises(UserError, match=f"{labels}.* has md5 .*expected .*md5 {expected}"):
        image_sources.load_torchvision("mnist", str(tiny_root), allow_download=False)
    labels.unlink()
    with pytest.raises(UserError, match=f"{labels} is missing; expected .*md5 {expected}"):
        image_sources.load_torchvision("mnist", str(tiny_root), allow_download=False)


def test_environment_variable_root_and_param_precedence(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv(image_sources.DATA_ROOT_ENV, str(tiny_root))
    images = image_sources.load_torchvision("mnist", "", allow_download=False)
    assert len(images.train_labels) == 10 * N_TRAIN_PER_CLASS
    # data.root, when set, wins over the environment variable
    with pytest.raises(UserError, match=r"is missing.*read from data.root"):
        image_sources.load_torchvision("mnist", str(tmp_path / "empty"), allow_download=False)


def test_without_root_or_download_the_cache_must_hold_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv(image_sources.DATA_ROOT_ENV, raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match=f"{cache / 'MNIST' / 'raw'}.* is missing.*download cache"):
        image_sources.load_torchvision("mnist", "", allow_download=False, cache=cache)


# --- protocols -------------------------------------------------------------------------------

def test_held_out_classes_are_the_test_anomalies_and_never_trained_on(params, tiny_root):
    splits = make_splits(image_params(params, "fashion_mnist", tiny_root, classes=(1, 8)))
    assert not np.isin(classes_of(np.concatenate([splits.train, splits.val])), [1, 8]).any()
    assert len(splits.train) + len(splits.val) == 8 * N_TRAIN_PER_CLASS
    assert splits.train.shape[1:] == (1, SIDE, SIDE) and splits.train.dtype == np.float32
    test_class = classes_of(splits.test)
    np.testing.assert_array_equal(splits.test_label, np.isin(test_class, [1, 8]))
    assert set(splits.test_kind[test_class == 1]) == {"Trouser"}
    assert set(splits.test_kind[test_class == 8]) == {"Bag"}
    assert set(splits.test_kind[splits.test_label == 0]) == {NORMAL}
    assert splits.train_label is None and set(splits.labels()) == {"test_label", "test_kind"}


def test_one_class_trains_on_that_class_only(params, tiny_root):
    data = image_params(params, "mnist", tiny_root, protocol="one_class", classes=(3,))
    splits = make_splits(data)
    assert set(classes_of(np.concatenate([splits.train, splits.val]))) == {3}
    test_class = classes_of(splits.test)
    np.testing.assert_array_equal(splits.test_label, test_class != 3)
    assert splits.test_kind[test_class == 7][0] == tv_datasets.MNIST.classes[7]


def test_plain_trains_on_everything_and_labels_all_test_normal(params, tiny_root):
    splits = make_splits(image_params(params, "mnist", tiny_root, protocol="plain"))
    assert len(splits.train) + len(splits.val) == 10 * N_TRAIN_PER_CLASS
    assert len(splits.val) == round(0.2 * 10 * N_TRAIN_PER_CLASS)
    assert splits.test_label.sum() == 0 and set(splits.test_kind) == {NORMAL}
    assert len(splits.test) == 10 * N_TEST_PER_CLASS


def test_validation_split_is_seeded(params, tiny_root):
    data = image_params(params, "mnist", tiny_root)
    a, b = make_splits(data), make_splits(data)
    np.testing.assert_array_equal(a.val, b.val)
    c = make_splits({**data, "seed": 1})
    assert not np.array_equal(classes_of(a.val), classes_of(c.val))


def test_row_caps_take_a_seeded_subsample_of_train_and_test(params, tiny_root):
    data = image_params(params, "mnist", tiny_root, classes=(1, 8))
    whole = make_splits(data)
    capped = make_splits({**data, "max_train": 50, "max_test": 12})
    assert len(capped.train) == 50 and len(capped.test) == 12
    np.testing.assert_array_equal(capped.val, whole.val)  # validation is left whole
    train_rows = {row.tobytes() for row in whole.train}
    assert all(row.tobytes() in train_rows for row in capped.train)
    # each test image keeps its own label and kind
    np.testing.assert_array_equal(capped.test_label, np.isin(classes_of(capped.test), [1, 8]))
    assert set(capped.test_kind[classes_of(capped.test) == 8]) <= {"8 - eight"}
    again = make_splits({**data, "max_train": 50, "max_test": 12})
    np.testing.assert_array_equal(capped.train, again.train)
    other = make_splits({**data, "max_train": 50, "max_test": 12, "seed": 1})
    assert not np.array_equal(capped.test_label, other.test_label) or not np.array_equal(capped.train, other.train)
    roomy = make_splits({**data, "max_train": 10_000, "max_test": 10_000})  # above the rows: no change
    np.testing.assert_array_equal(roomy.train, whole.train)
    np.testing.assert_array_equal(roomy.test, whole.test)


def test_row_cap_keeps_contaminated_training_labels(params):
    params["data"].update(source="blobs2d", val_fraction=0.1, max_train=100)
    splits = make_splits(validate(params)["data"])
    whole = make_splits({**params["data"], "max_train": 0})
    assert splits.train.shape == (100, 2) and splits.train_label.shape == (100,)
    lookup = {row.tobytes(): label for row, label in zip(whole.train, whole.train_label)}
    assert [lookup[row.tobytes()] for row in splits.train] == splits.train_label.tolist()


# --- digits and blobs2d ----------------------------------------------------------------------

def test_digits_held_out(params):
    params["data"].update(source="digits", classes=[0], val_fraction=0.1)
    params["data"]["digits"]["test_fraction"] = 0.3
    splits = make_splits(validate(params)["data"])
    assert splits.train.shape[1:] == (1, 8, 8) and splits.train.dtype == np.float32
    assert 0 <= splits.train.min() and splits.train.max() == 1
    assert len(splits.test) == round(0.3 * 1797)
    assert set(splits.test_kind) == {NORMAL, "0"}
    np.testing.assert_array_equal(splits.test_label, splits.test_kind == "0")
    zeros_outside_test = 178 - splits.test_label.sum()  # load_digits has 178 zeros
    assert len(splits.train) + len(splits.val) == 1797 - len(splits.test) - zeros_outside_test
    again = make_splits(params["data"])
    np.testing.assert_array_equal(splits.test, again.test)


def test_blobs2d_contaminated_train_with_labels(params):
    params["data"].update(source="blobs2d", val_fraction=0.1)
    splits = make_splits(validate(params)["data"])
    assert splits.train.shape == (900, 2) and splits.val.shape == (100, 2)
    assert splits.test.shape == (100, 2) and splits.train.dtype == np.float32
    assert splits.train_label.sum() + splits.val_label.sum() == 100  # contamination 0.1 of 1000
    assert splits.test_label.sum() == 10
    np.testing.assert_array_equal(splits.test_kind == OUTLIER, splits.test_label == 1)
    assert set(splits.labels()) == {"test_label", "test_kind", "train_label", "val_label"}
    assert splits.summary()["train"]["n_anomalies"] == splits.train_label.sum()
    # the outliers lie apart from the inlier blob
    outliers = splits.train[splits.train_label == 1]
    inlier_center = splits.train[splits.train_label == 0].mean(axis=0)
    assert np.median(np.linalg.norm(outliers - inlier_center, axis=1)) > 1.5
    again = make_splits(params["data"])
    np.testing.assert_array_equal(splits.train, again.train)
    other = make_splits({**params["data"], "seed": 1})
    assert not np.array_equal(splits.test, other.test)


def test_synthetic_labels_file_keeps_its_keys(params):
    cfg = {**params["data"]["synthetic"], "n_train": 50, "n_val": 10, "n_test": 40}
    assert set(make_synthetic(cfg, seed=0).labels()) == {"test_label", "test_kind", "test_changed"}


# --- params ----------------------------------------------------------------------------------

def test_class_counts_match_the_libraries():
    from sklearn.datasets import load_digits

    assert N_CLASSES["mnist"] == len(tv_datasets.MNIST.classes)
    assert N_CLASSES["fashion_mnist"] == len(tv_datasets.FashionMNIST.classes)
    assert N_CLASSES["digits"] == len(load_digits().target_names)


@pytest.mark.parametrize(
    "update, message",
    [
        ({"source": "cifar"}, "data.source = 'cifar' is not allowed; expected one of 'synthetic'"),
        ({"protocol": "two_class"}, "data.protocol = 'two_class' is not allowed"),
        ({"val_fraction": 0}, "data.val_fraction = 0 is not allowed; expected a number > 0"),
        ({"classes": [1, 1]}, "data.classes"),
        ({"root": None}, "data.root = None is not allowed; expected a string"),
        ({"download": "yes"}, "data.download = 'yes' is not allowed; expected true or false"),
        ({"source": "mnist", "classes": [10]}, "no class 10; class indices are 0 to 9"),
        ({"source": "digits", "protocol": "one_class", "classes": [1, 2]}, "exactly one"),
        ({"source": "fashion_mnist", "classes": []}, "needs 1 to 9 anomalous classes"),
        ({"source": "fashion_mnist", "classes": list(range(10))}, "needs 1 to 9 anomalous classes"),
        ({"max_train": -1}, "data.max_train = -1 is not allowed; expected an integer >= 0"),
        ({"max_train": 5}, "data.max_train = 5 leaves too few rows; expected 0 (no cap) or an integer >= 10"),
        ({"max_test": 1}, "data.max_test = 1 leaves too few rows; expected 0 (no cap) or an integer >= 2"),
        ({"max_test": 2.5}, "data.max_test = 2.5 is not allowed; expected an integer >= 0"),
    ],
)
def test_bad_data_params_name_key_and_allowed(params, update, message):
    params["data"].update(update)
    with pytest.raises(ParamsError) as err:
        validate(params)
    assert message in str(err.value)


@pytest.mark.parametrize("update", [
    {"source": "mnist", "protocol": "plain", "classes": []},
    {"source": "synthetic", "classes": [42]},  # classes only matter for labelled sources
    {"source": "digits", "protocol": "one_class", "classes": [9], "root": "../shared/datasets"},
])
def test_good_data_params(params, update):
    params["data"].update(update)
    validate(params)


def test_blobs2d_params_are_checked(params):
    params["data"]["blobs2d"]["contamination"] = 0.6
    with pytest.raises(ParamsError, match=r"data.blobs2d.contamination = 0.6 .*<= 0.5"):
        validate(params)


# --- the prepare stage -----------------------------------------------------------------------

def test_prepare_stage_writes_labels_and_examples(params, tmp_path, monkeypatch):
    from stages import prepare
    from vae_anomaly.io import read_arrays

    params["data"].update(source="blobs2d")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepare.main()
    labels = read_arrays(prepare.LABELS)
    assert labels["train_label"].dtype == np.int64 and labels["test_kind"].dtype.kind == "U"
    assert set(read_arrays(prepare.FEATURES)) == {"train", "val", "test", "columns"}  # columns: null for images
    assert (tmp_path / prepare.EXAMPLES).read_bytes()[:4] == b"\x89PNG"


def test_image_examples_figure(params, tiny_root, tmp_path):
    from vae_anomaly.data.figures import examples_figure
    from vae_anomaly.io import save_figure

    splits = make_splits(image_params(params, "mnist", tiny_root))
    save_figure(examples_figure(splits), tmp_path / "examples.png")
    assert (tmp_path / "examples.png").stat().st_size > 0
