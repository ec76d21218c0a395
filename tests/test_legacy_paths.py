"""Module paths of the layout before issue 8 still import, with a DeprecationWarning, and hold the same objects."""

from __future__ import annotations

import importlib
import pickle

import pytest

import modeling_mtrec
from modeling_mtrec._legacy import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_path_imports_with_a_warning(old):
    with pytest.warns(DeprecationWarning, match="old module path"):
        module = importlib.reload(importlib.import_module(f"modeling_mtrec.{old}"))
    assert module.__all__ and all(hasattr(module, name) for name in module.__all__)


def test_old_paths_hold_the_new_objects():
    from modeling_mtrec.data.two_tower import ItemFeatures, load_retrieval_corpus, stable_key
    from modeling_mtrec.inference import NewsVectorCache, encode_titles, fast_evaluate, write_mind_predictions
    from modeling_mtrec.metrics import load_mind_metric
    from modeling_mtrec.retrieval import build_index, evaluate_retrieval, retrieve_then_rank
    from modeling_mtrec.trainer import MTRecTrainingArguments, project_conflicting

    assert NewsVectorCache is modeling_mtrec.NewsVectorCache and fast_evaluate is modeling_mtrec.fast_evaluate
    assert encode_titles is modeling_mtrec.serving.cache.encode_titles  # MTRec's, not the two-tower text encoder
    assert write_mind_predictions is modeling_mtrec.evaluation.write_mind_predictions
    assert load_mind_metric is modeling_mtrec.evaluation.load_mind_metric
    assert load_retrieval_corpus is modeling_mtrec.load_retrieval_corpus and stable_key("U1") >= 0
    assert ItemFeatures.__module__ == "modeling_mtrec.models.two_tower.features"
    assert callable(build_index) and callable(evaluate_retrieval) and callable(retrieve_then_rank)
    assert callable(project_conflicting)
    # What a Trainer checkpoint's training_args.bin pickled: the class under its old module path.
    assert pickle.loads(pickle.dumps(MTRecTrainingArguments, protocol=0).replace(
        b"modeling_mtrec.models.mtrec.trainer", b"modeling_mtrec.trainer")) is MTRecTrainingArguments
