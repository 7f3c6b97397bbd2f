import copy
import os
from pathlib import Path

import pytest
import yaml
from torchvision import datasets as tv_datasets

from vae_anomaly.data.images import DATA_ROOT_ENV

from support import pin_tiny_md5s, write_raw_files

ROOT = Path(__file__).resolve().parents[1]
# The train stage logs with DVCLive, which posts to DVC Studio where a token is configured: a
# test never does (the stages run in this process, and in subprocesses that inherit this).
os.environ["DVC_STUDIO_OFFLINE"] = "true"


def raw_params() -> dict:
    """A fresh copy of the project's params.yaml as written, its "auto" values kept."""
    return copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))


@pytest.fixture
def params():
    """A fresh copy of the project's params.yaml, its "auto" values resolved for its data (the
    synthetic table), as the stages see it."""
    from vae_anomaly.params import resolve_auto

    return resolve_auto(raw_params())


@pytest.fixture
def tiny_root(tmp_path, monkeypatch):
    """A local root with tiny MNIST and Fashion-MNIST files whose md5s are pinned."""
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    root = tmp_path / "root"
    for dataset in (tv_datasets.MNIST, tv_datasets.FashionMNIST):
        write_raw_files(root, dataset)
        pin_tiny_md5s(monkeypatch, root, dataset)
    return root
