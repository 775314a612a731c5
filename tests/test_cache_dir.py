"""An unusable --cache folder fails at once (before loading); a failed write mid-run loses no score."""

from __future__ import annotations

import logging
import shutil

import pytest

from diffsim.cache import FeatureCache, check_cache_dir
from diffsim.cli.main import main
from diffsim.errors import CacheError


def test_unusable_cache_dir_is_refused_before_loading(tmp_path, capsys, image_files):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match=r"file.txt/cache cannot be used.*cache_dir="):
        check_cache_dir(blocker / "cache")
    # the model does not exist either: the cache error must come first (nothing was loaded)
    code = main(
        [
            "score",
            str(image_files[0]),
            str(image_files[1]),
            "--model",
            str(tmp_path / "no-model"),
            "--cache",
            str(blocker / "cache"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: feature cache folder") and err.count("\n") == 1
    assert "--cache DIR" in err and "cache_dir=" not in err
    assert check_cache_dir(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"  # created


def test_write_failure_mid_run_keeps_the_scores(tmp_path, tiny_metric, image_files, caplog):
    folder = tmp_path / "cache"
    m = tiny_metric.with_settings(cache_dir=str(folder))
    shutil.rmtree(folder)
    folder.write_text("the folder became a file")  # every later write fails
    with caplog.at_level(logging.WARNING, logger="diffsim"):
        got = m.matrix(image_files[:3])
    assert m.cache.write_failed
    assert sum("cannot write the feature cache" in r.message for r in caplog.records) == 1  # warned once
    fresh = type(m)(m.settings, backbone=m.backbone, cache=FeatureCache()).matrix(image_files[:3])
    assert got.tolist() == fresh.tolist()
