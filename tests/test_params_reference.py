"""docs/params.md is the schema's own text: every key has a doc, and the page is what
scripts/params_reference.py writes from them."""
import pytest

from scripts import params_reference
from vae_anomaly.params import SCHEMA, Number


def test_every_key_of_the_schema_says_what_it_does():
    assert params_reference.undocumented() == []


def test_the_check_sees_a_key_without_a_doc():
    assert params_reference.undocumented({"train": {"epochs": Number(1), "lr": Number(0, doc="Adam's")}}) == [
        "train.epochs"]


def test_docs_params_md_is_the_generated_page():
    text = params_reference.PAGE.read_text(encoding="utf-8")
    assert text == params_reference.page(), "docs/params.md is stale: run `python -m scripts.params_reference`"


def test_the_page_lists_every_key():
    text = params_reference.page()
    for key, _ in params_reference.leaves(SCHEMA):
        assert f"| `{key}` |" in text


def test_check_exits_1_on_a_stale_page_and_writing_makes_it_pass(tmp_path):
    page = tmp_path / "params.md"
    page.write_text("# Params\n\nby hand\n")
    with pytest.raises(SystemExit) as stale:
        params_reference.main(["--check"], page)
    assert stale.value.code == 1
    params_reference.main([], page)
    params_reference.main(["--check"], page)  # returns: the page is current
    assert page.read_text(encoding="utf-8") == params_reference.page()
