"""A table's columns as the model reads them (data/columns.py): inferred, saved as JSON, applied
again by name."""
import json

import numpy as np
import pandas as pd
import pytest

from vae_anomaly.data.columns import ColumnEncoding
from vae_anomaly.errors import InputError


def training_frame():
    return pd.DataFrame({
        "amount": [10.0, 20.0, np.nan, 30.0],
        "country": ["fr", "de", "fr", None],
        "present": [True, False, True, True],
        "code": [1, 2, 1, 2],
    })


def test_kinds_are_inferred_or_given_and_the_encoding_survives_json():
    encoding = ColumnEncoding.fit(training_frame(), categorical=["code"])
    assert [(c.name, c.kind, c.width) for c in encoding.columns] == [
        ("amount", "numeric", 1), ("country", "categorical", 2), ("present", "categorical", 2),
        ("code", "categorical", 2)]
    assert encoding.columns[0].mean == pytest.approx(20.0) and encoding.columns[0].std == pytest.approx(np.std([10, 20, 30]))
    assert encoding.categorical_blocks() == [[1, 2], [3, 2], [5, 2]]
    again = ColumnEncoding.from_json(json.loads(json.dumps(encoding.to_json())))
    assert again == encoding


def test_rows_are_encoded_by_name_in_any_order_with_gaps_and_unseen_categories():
    encoding = ColumnEncoding.fit(training_frame())
    new = pd.DataFrame({"present": [False, True], "country": ["it", "de"], "code": [2, 1], "amount": [np.nan, 25.0]})
    encoded = encoding.transform(new)
    std = encoding.columns[0].std
    expected = np.array([
        [np.nan, 0, 0, 1, 0, (2 - 1.5) / 0.5],  # amount missing; "it" unseen: a block of zeros
        [(25 - 20) / std, 1, 0, 0, 1, (1 - 1.5) / 0.5],
    ], dtype=np.float32)
    np.testing.assert_allclose(encoded.x, expected, rtol=1e-6)
    assert encoded.unseen == {"country": 1}
    missing_country = encoding.transform(new.assign(country=[None, "de"])).x
    assert np.isnan(missing_country[0, 1:3]).all()


def test_a_missing_or_unexpected_column_and_a_bad_value_are_named():
    encoding = ColumnEncoding.fit(training_frame(), ignored=["id"])
    new = training_frame()
    with pytest.raises(InputError, match=r"no column 'country'; the detector was fitted on the columns amount, "
                                         r"country, present, code \(matched by name"):
        encoding.transform(new.drop(columns=["country"]))
    with pytest.raises(InputError, match=r"a column 'extra' the detector was not fitted on; drop it"):
        encoding.transform(new.assign(extra=1))
    encoding.transform(new.assign(id=["a", "b", "c", "d"]))  # an ignored column is dropped wherever it is
    with pytest.raises(InputError, match=r"X\[2, amount\]: 'lots' is not a number, but the column was numeric"):
        encoding.transform(new.astype({"amount": object}).assign(amount=[1.0, 2.0, "lots", 4.0]))
    with pytest.raises(InputError, match=r"X\[1, amount\]: the value 1e\+300 is too large to score"):
        encoding.transform(new.assign(amount=[1.0, 1e300, 2.0, 3.0]))


def test_an_arrays_columns_are_read_by_position_and_grouped_back():
    x = np.arange(12.0).reshape(4, 3)
    encoding = ColumnEncoding.fit_array(x)
    assert encoding.names == ["x0", "x1", "x2"] and not encoding.named
    np.testing.assert_array_equal(encoding.transform(pd.DataFrame(x, columns=["p", "q", "r"])).x,
                                  encoding.transform(x).x)
    with pytest.raises(InputError, match=r"2 columns \(p, q\); the detector takes 3 numbers a row"):
        encoding.check_header(["p", "q"])
    mixed = ColumnEncoding.fit(training_frame())
    grouped = mixed.group(np.arange(6.0)[None].repeat(2, axis=0))
    np.testing.assert_array_equal(grouped[0], [0, 1 + 2, 3 + 4, 5])
    back = mixed.frame(mixed.transform(training_frame()).x)
    assert back["country"].tolist()[:3] == ["fr", "de", "fr"] and pd.isna(back["country"][3])
    assert back["present"].tolist() == ["True", "False", "True", "True"]


@pytest.mark.parametrize("frame", [False, True])
def test_a_column_constant_in_training_keeps_a_std_of_one_though_its_mean_rounds(frame):
    # 700 copies of 1.1 beside another column average to 1e-14 off it, so their std is that,
    # not 0 (as in ODDS cardio): scaled by it, a later 13.07 would be 1e15 and the loss NaN.
    value = 1.1
    train = np.column_stack([np.full(700, value), np.arange(700.0)])
    assert 0 < train.std(axis=0)[0] < 1e-13
    encoding = ColumnEncoding.fit(pd.DataFrame(train, columns=["a", "b"])) if frame else ColumnEncoding.fit_array(train)
    assert encoding.columns[0].std == 1.0 and encoding.columns[1].std == pytest.approx(train[:, 1].std())
    later = np.array([[13.07, 1.0]])
    x = encoding.transform(pd.DataFrame(later, columns=["a", "b"]) if frame else later).x
    assert x[0, 0] == pytest.approx(13.07 - value)
