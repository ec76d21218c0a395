"""What the recipes share: the comparison of models on the same dev impressions."""

from __future__ import annotations

import json

import pytest

from modeling_mtrec.training.recipes import DEV_COMPARISON, write_dev_comparison


def row(auc: float, impressions: int = 200, **more) -> dict[str, float]:
    return {"auc": auc, "mrr": 0.5, "ndcg@5": 0.55, "ndcg@10": 0.6, "num_impressions": impressions,
            "num_skipped_impressions": 0, **more}


def test_writes_the_rows_and_prints_the_last_rows_gains(tmp_path):
    rows = {"baseline": row(0.70), "untrained": row(0.66, runtime=3.2), "trained": row(0.75)}
    table = write_dev_comparison(tmp_path, rows, {"trained": "after training"})
    saved = json.loads((tmp_path / DEV_COMPARISON).read_text())
    assert list(saved) == ["baseline", "untrained", "trained"]
    assert saved["untrained"] == row(0.66)  # the metrics only: no speed figures
    lines = table.splitlines()
    assert lines[0].startswith("Dev impressions: 200, the same for every row")
    assert lines[-2].split() == ["after", "training", "0.7500", "0.5000", "0.5500", "0.6000"]
    assert lines[-1] == "AUC gain of after training: +0.0500 over baseline, +0.0900 over untrained"


def test_refuses_rows_scored_on_other_impressions(tmp_path):
    with pytest.raises(ValueError, match="different numbers of impressions.*'trained': 199"):
        write_dev_comparison(tmp_path, {"untrained": row(0.6), "trained": row(0.7, impressions=199)})
    assert not (tmp_path / DEV_COMPARISON).exists()


def test_reuse_freed_memory_sets_glibcs_thresholds_unless_the_environment_chose(monkeypatch):
    import platform

    from modeling_mtrec.training import recipes

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert recipes.reuse_freed_memory() is False  # the user's own choice stays
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert recipes.reuse_freed_memory() is expected
    monkeypatch.setattr(recipes.platform, "system", lambda: "Darwin")
    assert recipes.reuse_freed_memory() is False  # no glibc: nothing to set
