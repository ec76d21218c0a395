"""The demo's handlers without a browser: dev users fill the boxes, ranking equals the pipeline, bad input gets a
message, retrieve-then-rank over a two-tower folder, a clear exit for a missing folder."""

from __future__ import annotations

import importlib.util
import json
import sys

import faiss
import pytest

from modeling_mtrec import NewsRecommendationPipeline, TwoTowerModel
from modeling_mtrec.data import generate_synthetic_mind, synthetic_tokenizer
from modeling_mtrec.models.two_tower.corpus import load_retrieval_corpus
from modeling_mtrec.serving.pipeline import save_pipeline_code
from modeling_mtrec.serving.retrieval import export_item_vectors
from modeling_mtrec.vectors import build_index
from tests.testing_utils import REPO_ROOT, synthetic_model, tiny_tt_config

pytestmark = pytest.mark.usefixtures("one_thread")

_spec = importlib.util.spec_from_file_location("demo_app", REPO_ROOT / "demo" / "app.py")
demo_app = importlib.util.module_from_spec(_spec)
sys.modules["demo_app"] = demo_app  # dataclasses look their module up there
_spec.loader.exec_module(demo_app)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """An MTRec folder with the synthetic corpus beside it (as train_mtrec.py leaves it) and a two-tower folder."""
    root = tmp_path_factory.mktemp("demo")
    tokenizer = synthetic_tokenizer()
    mtrec = root / "mtrec"
    synthetic_model(tokenizer, {"news": 0, "sports": 1}).save_pretrained(mtrec)
    tokenizer.save_pretrained(mtrec)
    save_pipeline_code(mtrec)
    dirs = generate_synthetic_mind(str(mtrec / "synthetic_mind"), seed=0, num_news=60, num_users=10, num_dev_news=20,
                                   num_dev_users=8)
    two_tower = root / "two-tower"
    corpus = load_retrieval_corpus(train_dir=dirs["train"], eval_dir=dirs["dev"])
    model = TwoTowerModel(tiny_tt_config()).eval()
    model.save_pretrained(two_tower)
    faiss.write_index(build_index(export_item_vectors(model, corpus.items)), str(two_tower / "items.faiss"))
    (two_tower / "news_ids.json").write_text(json.dumps(list(corpus.news_index)))
    generate_synthetic_mind(str(two_tower / "synthetic_mind"), seed=0, num_news=60, num_users=10, num_dev_news=20,
                            num_dev_users=8)
    return mtrec, two_tower, corpus


@pytest.fixture(scope="module")
def app(folders):
    mtrec, two_tower, _ = folders
    return demo_app.App(str(mtrec), two_tower=str(two_tower))


def test_a_dev_user_fills_the_boxes_and_ranks_as_the_pipeline(app):
    label = next(iter(app.dev.impressions))
    history, candidates = app.pick_user(label)
    assert history and candidates
    message, ranking, weights = app.rank(history, candidates)
    assert message.startswith("Ranked") and '<ol id="ranking-list">' in ranking and "weights-list" in weights
    expected = NewsRecommendationPipeline(model=app.model, tokenizer=app.tokenizer, device="cpu")(
        {"history": history.splitlines(), "candidates": candidates.splitlines()}
    )
    assert ranking == demo_app.ranking_html(expected)
    assert app.pick_user(None) == ("", "")


@pytest.mark.parametrize(
    ("history", "candidates", "message"),
    [
        ("", "a\nb", "enter at least one title the user clicked"),
        ("a", " \n", "enter at least one title to rank"),
        ("a", "x" * 10_000, "10,000 characters"),
        ("a", "\n".join(["b"] * 301), "at most 300"),
    ],
)
def test_bad_input_gets_a_message(app, history, candidates, message):
    shown, ranking, weights = app.rank(history, candidates)
    assert shown.startswith("**Cannot rank:**") and message in shown
    assert ranking == weights == ""


def test_retrieve_then_rank_over_the_whole_news_table(app, folders):
    _, _, corpus = folders
    ids = list(corpus.news_index)[:3]
    message, listing = app.retrieve("\n".join(ids), 20, 5)
    assert message.startswith("Retrieved 20 of") and listing.count("<li>") == 5
    assert not any(f"<code>{i}</code>" in listing for i in ids)  # the history is not recommended again
    shown, listing = app.retrieve("N_unknown", 20, 5)
    assert "unknown news id(s): N_unknown" in shown and listing == ""
    assert "at least one news id" in app.retrieve("", 20, 5)[0]


def test_missing_folder_exits_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        demo_app.main(["--model", str(tmp_path / "nothing")])
    assert "no saved model there" in str(error.value) and "train_mtrec.py" in str(error.value)
