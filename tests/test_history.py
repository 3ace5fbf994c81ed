"""Training histories: both formats, their summary, and malformed files."""

from __future__ import annotations

import json
import math

import pytest

from explain.history import HistoryError, parse_history

CSV = (
    b"epoch,accuracy,loss,val_accuracy,val_loss,learning_rate\n"
    b"0,0.6,0.9,0.55,1.2,0.001\n1,0.8,0.5,0.75,0.6,0.001\n2,0.9,0.3,0.7,0.7,0.001\n"
)


def test_csv_logger_summary():
    history = parse_history(CSV, "r50", "history.csv")
    summary = history.summary()
    assert summary["epochs"] == 3
    assert summary["max train accuracy"] == 0.9 and summary["max train accuracy epoch"] == 3
    assert summary["min train loss"] == 0.3
    assert summary["max val accuracy"] == 0.75 and summary["max val accuracy epoch"] == 2
    assert summary["min val loss"] == 0.6 and summary["min val loss epoch"] == 2


def test_history_json_both_shapes_and_old_names():
    as_dict = json.dumps(
        {"acc": [0.5, 0.7], "loss": [1.0, 0.6], "val_acc": [0.4, 0.65], "val_loss": [1.1, 0.8]}
    )
    as_rows = json.dumps([{"accuracy": 0.5, "loss": 1.0}, {"accuracy": 0.7, "loss": 0.6}])
    a = parse_history(as_dict.encode(), "a", "h.json")
    b = parse_history(as_rows.encode(), "b", "h.json")
    assert a.summary()["max val accuracy"] == 0.65
    assert b.summary()["max train accuracy"] == 0.7 and b.summary()["max val accuracy"] is None


def test_nan_values_are_gaps_with_a_warning():
    data = b"epoch,accuracy,loss\n0,0.5,nan\n1,0.6,inf\n2,0.7,0.4\n"
    history = parse_history(data, "x", "h.csv")
    assert history.summary()["min train loss"] == 0.4
    assert any("NaN or infinite" in w for w in history.warnings)
    assert math.isnan(history.metrics["loss"][0])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"{not json", "malformed JSON"),
        (b'{"history": 3}', "not a Keras history"),
        (b"epoch,foo\n0,1\n", "no accuracy or loss"),
        (b"epoch,accuracy\n", "no epochs"),
        (b"epoch,accuracy,loss\n0,0.5\n", "different numbers of fields"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"a" * (6 * 1024 * 1024), "limit"),
    ],
)
def test_malformed_histories_get_a_clear_message(data, message):
    with pytest.raises(HistoryError, match=message):
        parse_history(data, "bad", "bad.csv")
