"""MIND news-recommendation metric (AUC, MRR, nDCG@5, nDCG@10 per impression) as an ``evaluate`` module.

Load it offline from its folder (no Hub access is needed or attempted for a local path)::

    import evaluate
    mind = evaluate.load("path/to/modeling_mtrec/evaluation/mind_metric")   # or .../mind_metric/mind_metric.py
    # or: from modeling_mtrec.evaluation import load_mind_metric; mind = load_mind_metric()
    mind.compute(predictions=[[0.9, 0.2, 0.4]], references=[[1, 0, 0]])

NOTE: ``evaluate`` copies this script into its module cache and imports it from there, so a relative import
(``from ..metrics import ...``) cannot work; the implementation is imported absolutely from the installed
``modeling_mtrec`` package, which keeps one definition of each metric. Since the cached copy imports the
package at run time, edits to ``modeling_mtrec/evaluation/metrics.py`` take effect without clearing evaluate's cache.
"""

from __future__ import annotations

import datasets
import evaluate

# Indented on purpose: evaluate scans top-level imports and, for a missing one, suggests `pip install
# modeling_mtrec` from PyPI, which is not where this package comes from. Say how to get it instead.
try:
    from modeling_mtrec.evaluation.metrics import impression_metrics
except ImportError as err:
    raise ImportError(
        "the MIND metric needs the `modeling_mtrec` package importable (evaluate runs this script from its "
        "cache, not from the repository): install the repository with `pip install -e <repo root>`, or put "
        "the repository root on sys.path"
    ) from err

_DESCRIPTION = """\
MIND's official news-recommendation metrics. Each example is one impression: the scores a model gave to the
candidate news shown to a user (predictions) and whether each was clicked (references: 1 clicked, 0 not
clicked, -100 padding to drop). AUC, MRR, nDCG@5 and nDCG@10 are computed per impression as in MIND's
evaluate.py and averaged over impressions. Impressions without a click or without a non-click (where AUC is
undefined) are left out and counted in `num_skipped_impressions`. Ties in ranking are broken by position
(stable sort on -score) for all four metrics, as in the prediction.txt MIND's scorer reads, so the numbers are
the official scorer's on that file and deterministic.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): one row of candidate scores per impression (higher = more
        likely clicked). Rows may have different lengths.
    references (`list` of `list` of `int`): one row of labels per impression, same lengths as the
        predictions: 1 clicked, 0 not clicked, -100 padded slot (dropped with its score).
Returns:
    auc (`float`): mean ROC AUC over scored impressions.
    mrr (`float`): mean of MIND's MRR (mean reciprocal rank of all clicked news in an impression).
    ndcg@5 (`float`), ndcg@10 (`float`): mean nDCG with gains 2**y - 1 and discounts log2(rank + 1).
    num_impressions (`int`): impressions scored.
    num_skipped_impressions (`int`): impressions left out for having no click or no non-click.
Examples:
    >>> mind = evaluate.load("modeling_mtrec/evaluation/mind_metric")
    >>> mind.compute(predictions=[[0.9, 0.2, 0.4]], references=[[1, 0, 0]])["auc"]
    1.0
"""

_CITATION = """\
@inproceedings{wu-etal-2020-mind,
    title = "{MIND}: A Large-scale Dataset for News Recommendation",
    author = "Wu, Fangzhao and Qiao, Ying and Chen, Jiun-Hung and Wu, Chuhan and Qi, Tao and Lian, Jianxun and
      Liu, Danyang and Xie, Xing and Gao, Jianfeng and Wu, Winnie and Zhou, Ming",
    booktitle = "Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics",
    year = "2020",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/2020.acl-main.331",
    doi = "10.18653/v1/2020.acl-main.331",
    pages = "3597--3606",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MindMetric(evaluate.Metric):
    """``evaluate`` wrapper around :func:`modeling_mtrec.evaluation.metrics.impression_metrics`."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # One row per impression. Scores are stored as float64, not float32: casting float64 scores
            # down could create ties that change AUC/MRR/nDCG; float32 model outputs convert exactly.
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
            homepage="https://msnews.github.io/",
            reference_urls=["https://aclanthology.org/2020.acl-main.331"],
        )

    def _compute(self, predictions: list[list[float]], references: list[list[int]]) -> dict[str, float]:
        return impression_metrics(labels=references, scores=predictions)
