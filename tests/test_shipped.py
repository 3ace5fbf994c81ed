"""The shipped default models: present, loadable, and as accurate as their cards claim."""

from __future__ import annotations

import pytest

from models.registry import DEFAULT_DIR, entry_for, load_model
from tests.conftest import CATS_VS_DOGS, needs_shared_data

SHIPPED = ["resnet50", "resnet101"]
needs_shipped = pytest.mark.skipif(
    not all((DEFAULT_DIR / f"{n}.keras").is_file() for n in SHIPPED),
    reason="the default models are not in models/shipped yet (python -m training.publish puts them there)",
)


@needs_shipped
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_card_and_file(name):
    path = DEFAULT_DIR / f"{name}.keras"
    assert path.stat().st_size < 100 * 2**20
    entry = entry_for(path, "shipped")
    card = entry.card
    assert entry.has_card and card.architecture == name and card.class_names == ["cat", "dog"]
    assert min(card.preprocessing.input_size) >= 160
    assert entry.history_path is not None
    assert "accuracy" in card.test and card.test["n"] >= 2000


@needs_shipped
@needs_shared_data
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_holds_its_accuracy_on_a_fixed_slice(name):
    from explain.explainer import Explainer
    from models.data import list_labelled
    from models.evaluate import evaluate

    entry = entry_for(DEFAULT_DIR / f"{name}.keras", "shipped")
    explainer = Explainer.from_card(load_model(entry.path), entry.card)
    files = list_labelled(CATS_VS_DOGS / "test", entry.card.class_names)
    result = evaluate(explainer, files.first_per_class(100), name)  # 200 photos
    assert result.n == 200
    assert result.accuracy >= entry.card.test["accuracy"] - 0.03, (result.accuracy, entry.card.test)
