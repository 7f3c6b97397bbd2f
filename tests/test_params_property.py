"""Property tests: any broken params document is refused with a ParamsError naming its key.

The documents are the default params.yaml with random damage: keys dropped, typo keys
added, values (or whole sections) replaced by values of the wrong type or out of range. The
keys come from ``SCHEMA`` at test time, so the tests follow the schema as it grows.
"""
import copy
import importlib
import logging
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vae_anomaly.cli import run_stage
from vae_anomaly.errors import ParamsError
from vae_anomaly.params import SCHEMA, load_params, validate

from conftest import ROOT

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def schema_paths(schema: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key of ``schema`` as a tuple path, sections and leaves alike."""
    paths = []
    for name, spec in schema.items():
        paths.append(prefix + (name,))
        if isinstance(spec, dict):
            paths += schema_paths(spec, prefix + (name,))
    return paths


def spec_at(path: tuple):
    spec = SCHEMA
    for name in path:
        spec = spec[name]
    return spec


PATHS = schema_paths(SCHEMA)
SECTIONS = [()] + [p for p in PATHS if isinstance(spec_at(p), dict)]
OPTIONS = sorted({o for p in PATHS for o in getattr(spec_at(p), "options", ())})

# What YAML can give: every scalar type safe_load builds, and lists and mappings of them
# (mapping keys included: `1:`, `~:` and `yes:` are int, None and bool keys).
yaml_keys = st.text(max_size=8) | st.integers(-3, 3) | st.booleans() | st.none()
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.integers()
    | st.floats(-2, 2)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, 0.0, 1.0, 100, 100.5, -1e-9, 1e-300, 10**40])
    | st.sampled_from(OPTIONS)
    | st.text(max_size=10)
    | st.dates()
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(yaml_keys, inner, max_size=4),
    max_leaves=8,
)


def typos(name: str) -> list[str]:
    return [name + "s", name[:-1], name.upper(), name.replace("_", "-"), name + " ", "_" + name]


def lookup(doc, path: tuple):
    """The value at ``path``, or None where an ancestor is no longer a mapping."""
    for name in path:
        if not isinstance(doc, dict) or name not in doc:
            return None
        doc = doc[name]
    return doc


@st.composite
def damaged_params(draw) -> tuple:
    """The default params with 1 to 3 random damages; returns (document, damaged paths)."""
    doc = copy.deepcopy(DEFAULT)
    damaged: list[tuple] = []
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["drop", "add", "replace"]))
        if action == "add":
            section = draw(st.sampled_from(SECTIONS))
            parent = lookup(doc, section)
            known = list(spec_at(section)) if section else list(SCHEMA)
            typo = st.sampled_from(known).flatmap(lambda k: st.sampled_from(typos(k)))
            name = draw(typo | yaml_keys)
            if isinstance(parent, dict):
                parent[name] = draw(yaml_values)
                damaged.append(section + (name,))
            continue
        path = draw(st.sampled_from(PATHS + ([()] if action == "replace" else [])))
        if path == ():
            doc = draw(yaml_values)
            damaged.append(())
            continue
        parent = lookup(doc, path[:-1])
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        if action == "drop":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(yaml_values)
        damaged.append(path)
    return doc, damaged


def names_path(message: str, path: tuple) -> bool:
    """Whether ``message`` names the key at ``path`` (or, for a section, a key inside it)."""
    if not path:
        return True  # the whole document was replaced: every key is inside it
    dotted = ".".join(str(p) for p in path)
    forms = {dotted, repr(dotted)[1:-1]}  # repr: keys with unprintable characters
    return any(re.search(rf"(?<![\w.]){re.escape(f)}(?!\w)", message) for f in forms)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(damaged_params())
def test_damaged_params_are_refused_with_the_key_named(case):
    doc, damaged = case
    try:
        validate(doc)
    except ParamsError as err:
        message = str(err)
        assert "\n" not in message
        assert any(names_path(message, path) for path in damaged), (message, damaged)


@pytest.fixture(scope="module")
def params_path(tmp_path_factory):
    return tmp_path_factory.mktemp("params") / "params.yaml"


@settings(max_examples=60, deadline=None, database=None)
@given(damaged_params())
def test_damaged_params_file_is_refused_by_load_params(params_path, case):
    """The same documents through a real file: dumped to YAML, loaded, validated."""
    doc, _ = case
    path = params_path
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        load_params(path)
    except ParamsError as err:
        assert "\n" not in str(err)


@settings(max_examples=60, deadline=None, database=None)
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode)
       | st.sampled_from([b"\xff\xfe", "caf\xe9".encode("latin-1"), b"[" * 3000, b"a: [\n",
                          b"a: &x [*x]\n", b"!!python/object/apply:os.system [true]\n",
                          b"1: a\nb: c\n"]))
def test_any_file_content_gives_params_or_params_error(params_path, content):
    path = params_path
    path.write_bytes(content)
    try:
        load_params(path)
    except ParamsError as err:
        assert "\n" not in str(err)


def stage_modules() -> list[str]:
    """The stage modules `dvc.yaml` runs (`python -m stages.NAME`)."""
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    commands = " ".join(str(stage.get("cmd", "")) for stage in pipeline["stages"].values())
    return sorted(set(re.findall(r"-m (stages\.\w+)", commands)))


@pytest.mark.parametrize("module", stage_modules())
def test_stage_with_bad_params_exits_2_with_one_line(module, tmp_path, monkeypatch, caplog):
    params = copy.deepcopy(DEFAULT)
    params["model"]["beta"] = "high"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(module).main
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
        run_stage(main, argv=[])
    assert stop.value.code == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage().startswith("model.beta = 'high' is not allowed; expected ")
    assert "\n" not in errors[0].getMessage()
    assert errors[0].exc_info is None  # no traceback
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
