"""Training histories in every format people have, their summary, smoothing, bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from explain.history import (
    HistoryError,
    load_history,
    modified,
    pair_event_uploads,
    parse_history,
    smooth,
)
from tests.conftest import SHARED_DATA

HISTORIES = SHARED_DATA / "real_models" / "histories"
CSV = (
    b"epoch,accuracy,loss,val_accuracy,val_loss,learning_rate\n"
    b"0,0.6,0.9,0.55,1.2,0.001\n1,0.8,0.5,0.75,0.6,0.001\n2,0.9,0.3,0.7,0.7,0.001\n"
)
FIT = {
    "loss": [0.69, 0.52, 0.41, 0.37],
    "accuracy": [0.55, 0.74, 0.81, 0.84],
    "val_loss": [0.66, 0.55, 0.5, 0.52],
    "val_accuracy": [0.6, 0.72, 0.78, 0.77],
}


def test_csv_logger_summary():
    history = parse_history(CSV, "r50", "history.csv")
    summary = history.summary()
    assert summary["epochs"] == 3
    assert summary["max train accuracy"] == 0.9 and summary["max train accuracy epoch"] == 3
    assert summary["min train loss"] == 0.3
    assert summary["max val accuracy"] == 0.75 and summary["max val accuracy epoch"] == 2
    assert summary["min val loss"] == 0.6 and summary["min val loss epoch"] == 2
    assert list(history.metrics["learning_rate"]) == [0.001] * 3


def test_history_json_both_shapes_and_old_names():
    as_dict = json.dumps(
        {"acc": [0.5, 0.7], "loss": [1.0, 0.6], "val_acc": [0.4, 0.65], "val_loss": [1.1, 0.8]}
    )
    as_rows = json.dumps([{"accuracy": 0.5, "loss": 1.0}, {"accuracy": 0.7, "loss": 0.6}])
    a = parse_history(as_dict.encode(), "a", "h.json")
    b = parse_history(as_rows.encode(), "b", "h.json")
    assert a.summary()["max val accuracy"] == 0.65
    assert b.summary()["max train accuracy"] == 0.7 and b.summary()["max val accuracy"] is None


def test_pandas_to_csv_index_is_not_a_metric():
    pandas = pytest.importorskip("pandas")
    data = pandas.DataFrame({**FIT, "lr": [1e-3, 1e-3, 1e-4, 1e-4]}).to_csv().encode()
    assert data.startswith(b",loss,")  # pandas' unnamed index column, as people save it
    history = parse_history(data, "p", "history.csv")
    assert set(history.metrics) == {*FIT, "learning_rate"}
    assert list(history.epochs) == [1, 2, 3, 4]
    assert history.summary()["min val loss epoch"] == 3
    assert not history.warnings
    # Read back and written again, the index column is called "Unnamed: 0".
    again = pandas.read_csv(pandas.io.common.StringIO(data.decode())).to_csv(index=False).encode()
    assert set(parse_history(again, "p", "h.csv").metrics) == {*FIT, "learning_rate"}


def test_pandas_to_json_columns():
    pandas = pytest.importorskip("pandas")
    data = pandas.DataFrame(FIT).to_json().encode()  # {"loss": {"0": ..., "1": ...}, ...}
    history = parse_history(data, "p", "history.json")
    np.testing.assert_allclose(history.metrics["val_accuracy"], FIT["val_accuracy"])


def test_ragged_json_shows_what_is_there_with_gaps_and_a_warning():
    ragged = {"loss": [0.9, 0.6, 0.5, 0.4, 0.35], "acc": [0.5, 0.6, 0.7], "val_loss": [1.0, 0.7]}
    history = parse_history(json.dumps(ragged).encode(), "r", "history.json")
    assert list(history.epochs) == [1, 2, 3, 4, 5]
    assert np.isnan(history.metrics["val_loss"][2:]).all()
    assert history.metrics["accuracy"][2] == 0.7 and np.isnan(history.metrics["accuracy"][3])
    assert any("different lengths" in w and "val_loss 2" in w for w in history.warnings)
    assert history.summary()["min val loss"] == 0.7


def test_nan_values_are_gaps_with_a_warning():
    data = b"epoch,accuracy,loss\n0,0.5,nan\n1,0.6,inf\n2,0.7,0.4\n"
    history = parse_history(data, "x", "h.csv")
    assert history.summary()["min train loss"] == 0.4
    assert any("NaN or infinite" in w for w in history.warnings)
    assert math.isnan(history.metrics["loss"][0])


# --- the log model.fit printed --------------------------------------------------------------

B = "\x08" * 40  # Keras 2 redraws its bar with backspaces
KERAS2_LOG = (
    "Epoch 1/3\n"
    f"\r 1/60 [..............................] - ETA: 1:39 - loss: 0.6397 - acc: 0.6250{B}"
    f"\r30/60 [==============>...............] - ETA: 0s - loss: 0.6602 - acc: 0.5900{B}"
    "\r60/60 [==============================] - 2s 8ms/step - loss: 0.6806 - acc: 0.5542"
    " - val_loss: 0.6842 - val_acc: 0.5750 - lr: 0.0010\n"
    "Epoch 2/3\n"
    f"\r 1/60 [..............................] - ETA: 0s - loss: 0.6475 - acc: 0.6250{B}\n"
    "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.00010000000474974513.\n"
    f"{B}\r60/60 [==============================] - 0s 8ms/step - loss: 0.5776 - acc: 0.6542"
    " - val_loss: 0.5818 - val_acc: 0.6688 - lr: 1.0000e-04\n"
    "Epoch 3/3\n"
    f"\r 7/60 [==>...........................] - ETA: 0s - loss: 0.5000 - acc: 0.7000{B}"
)
E = "\x1b[0m"
KERAS3_LOG = (
    "Epoch 1/2\n"
    f"\r\x1b[1m1/2{E} \x1b[32m━━━━━━━━━━{E}\x1b[37m━━━━━━━━━━{E} \x1b[1m1s{E} 2s/step"
    " - accuracy: 0.3750 - loss: 0.7727"
    f"\r\x1b[1m2/2{E} \x1b[32m━━━━━━━━━━━━━━━━━━━━{E}\x1b[37m{E} \x1b[1m2s{E} 638ms/step"
    " - accuracy: 0.4167 - loss: 0.7407 - val_accuracy: 0.4375 - val_loss: 0.7253\n"
    "Epoch 2/2\n"
    "2/2 ━━━━━━━━━━━━━━━━━━━━ 1s 196ms/step - accuracy: 0.5000 - f1_score: 0.4000"
    " - loss: 0.7001 - val_accuracy: 0.5375 - val_f1_score: 0.5100 - val_loss: 0.7049"
    " - learning_rate: 0.0010\n"
    "Epoch 2: val_loss improved from 0.72532 to 0.70490, saving model to best.keras\n"
)


def test_keras2_progress_log_with_bars_eta_and_callback_lines():
    history = parse_history(KERAS2_LOG.encode(), "k2", "train.log")
    assert list(history.epochs) == [1, 2]  # epoch 3 never finished
    np.testing.assert_allclose(history.metrics["accuracy"], [0.5542, 0.6542])
    np.testing.assert_allclose(history.metrics["val_accuracy"], [0.575, 0.6688])
    np.testing.assert_allclose(history.metrics["learning_rate"], [1e-3, 1e-4])
    assert set(history.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert any("epoch 3" in w for w in history.warnings)


def test_keras3_progress_log_with_colours_and_extra_metrics():
    history = parse_history(KERAS3_LOG.encode(), "k3", "output.txt")
    np.testing.assert_allclose(history.metrics["loss"], [0.7407, 0.7001])
    np.testing.assert_allclose(history.metrics["val_loss"], [0.7253, 0.7049])
    assert math.isnan(history.metrics["f1_score"][0]) and history.metrics["val_f1_score"][1] == 0.51
    assert history.extra_metrics() == ["f1_score"]
    assert math.isnan(history.metrics["learning_rate"][0])


def test_verbose_2_log_and_two_fits_in_one_log():
    log = (
        "Epoch 1/2\n60/60 - 1s - loss: 0.6759 - acc: 0.5625 - val_loss: 0.6815 - val_acc: 0.5688"
        " - 627ms/epoch - 10ms/step\nEpoch 2/2\n - 45s - loss: 0.6 - acc: 0.6 - val_loss: 0.65"
        " - val_acc: 0.6\nEpoch 1/1\n60/60 - 0s - loss: 0.5 - acc: 0.7 - val_loss: 0.6 - val_acc: 0.65\n"
    )
    history = parse_history(log.encode(), "v2", "log.txt")
    assert list(history.epochs) == [1, 2, 3]
    np.testing.assert_allclose(history.metrics["loss"], [0.6759, 0.6, 0.5])
    assert any("start again" in w for w in history.warnings)
    resumed = parse_history(b"Epoch 11/12\n - loss: 0.3\nEpoch 12/12\n - loss: 0.2\n", "r", "l.txt")
    assert list(resumed.epochs) == [11, 12]  # fit(initial_epoch=10) keeps its numbers


def test_pasted_log_lines_and_other_prints_between_them():
    log = (
        "Epoch 1/2\nloss: 0.5213 - acc: 0.7410 - val_loss: 0.6 - val_acc: 0.7\n"
        "Epoch 2/2\nloss: 0.4 - acc: 0.8 - val_loss: 0.55 - val_acc: 0.75\nF1: 0.9 on my own check\n"
    )
    history = parse_history(log.encode(), "pasted", "notebook.txt")
    np.testing.assert_allclose(history.metrics["loss"], [0.5213, 0.4])
    assert set(history.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}


# --- TensorBoard event files ------------------------------------------------------------------


def write_keras_logs(folder: Path, epochs: int = 3) -> Path:
    """Write what Keras' TensorBoard callback writes, with tf.summary: train/ and validation/."""
    import tensorflow as tf

    train = tf.summary.create_file_writer(str(folder / "train"))
    with train.as_default():
        for epoch in range(epochs):
            tf.summary.scalar("epoch_loss", 1.0 / (epoch + 1), step=epoch)
            tf.summary.scalar("epoch_accuracy", 0.5 + 0.1 * epoch, step=epoch)
            tf.summary.scalar("epoch_learning_rate", 1e-3 * 0.1**epoch, step=epoch)
            tf.summary.histogram("dense/kernel", tf.random.normal([8]), step=epoch)
    train.close()
    val = tf.summary.create_file_writer(str(folder / "validation"))
    with val.as_default():
        for epoch in range(epochs):
            tf.summary.scalar("evaluation_loss_vs_iterations", 9.0, step=10 * epoch)
            tf.summary.scalar("epoch_loss", 1.2 / (epoch + 1), step=epoch)
            tf.summary.scalar("epoch_accuracy", 0.45 + 0.1 * epoch, step=epoch)
    val.close()
    return folder


def test_tensorboard_log_folder_train_and_validation(tmp_path):
    history = load_history(write_keras_logs(tmp_path / "logs"), "tb")
    assert list(history.epochs) == [1, 2, 3] and history.x_label == "epoch"
    assert set(history.metrics) == {"loss", "accuracy", "learning_rate", "val_loss", "val_accuracy"}
    np.testing.assert_allclose(history.metrics["val_loss"], [1.2, 0.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(history.metrics["learning_rate"], [1e-3, 1e-4, 1e-5], rtol=1e-6)
    assert history.summary()["max val accuracy epoch"] == 3
    newest = max(p.stat().st_mtime for p in (tmp_path / "logs").glob("*/events.out.tfevents.*"))
    assert modified(tmp_path / "logs") == newest  # the page's cache key sees new epochs
    (only_val,) = (tmp_path / "logs" / "validation").iterdir()
    assert set(load_history(only_val).metrics) == {"val_loss", "val_accuracy"}  # by its folder


def test_uploaded_event_files_pair_into_one_run(tmp_path):
    logs = write_keras_logs(tmp_path / "logs")
    uploads = []
    for path in sorted(logs.glob("*/events.out.tfevents.*")):
        # An upload has no folder: the validation file is known by Keras' evaluation_* scalars.
        uploads.append((path.name, parse_history(path.read_bytes(), path.name, path.name)))
    assert {frozenset(h.metrics) for _, h in uploads} == {
        frozenset({"loss", "accuracy", "learning_rate"}),
        frozenset({"val_loss", "val_accuracy"}),
    }
    (run,) = pair_event_uploads(uploads, " (uploaded)")
    assert run.name.startswith("TensorBoard ") and run.name.endswith(" (uploaded)")
    assert set(run.metrics) == {"loss", "accuracy", "learning_rate", "val_loss", "val_accuracy"}
    np.testing.assert_allclose(run.metrics["val_accuracy"], [0.45, 0.55, 0.65], rtol=1e-6)
    # Renamed by the user, the files say by their names which is which.
    renamed = [
        (f"{p.parent.name}.tfevents", parse_history(p.read_bytes(), "x", f"{p.parent.name}.tfevents"))
        for p in sorted(logs.glob("*/events.out.tfevents.*"))
    ]
    (run,) = pair_event_uploads(renamed)
    assert run.name == "TensorBoard run" and "val_loss" in run.metrics


def test_tf1_simple_value_events_and_steps(tmp_path):
    import tensorflow as tf
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    path = tmp_path / "events.out.tfevents.1500000000.oldhost"
    with tf.io.TFRecordWriter(str(path)) as writer:  # an event file is TFRecords of Events
        writer.write(Event(file_version="brain.Event:2").SerializeToString())
        for step, (acc, val_acc) in zip((100, 200, 300), ((0.6, 0.55), (0.7, 0.66), (0.8, 0.7))):
            values = [Summary.Value(tag="acc", simple_value=acc)]
            values.append(Summary.Value(tag="val_acc", simple_value=val_acc))
            writer.write(Event(step=step, summary=Summary(value=values)).SerializeToString())
    history = parse_history(path.read_bytes(), "tf1", path.name)
    assert history.x_label == "step" and list(history.epochs) == [100, 200, 300]
    np.testing.assert_allclose(history.metrics["val_accuracy"], [0.55, 0.66, 0.7], rtol=1e-6)


def test_bad_event_files_get_a_clear_message(tmp_path):
    with pytest.raises(HistoryError, match="not a TensorBoard event file"):
        parse_history(b"\x00" * 200, "x", "events.out.tfevents.1.host.1.0.v2")
    logs = write_keras_logs(tmp_path / "two" / "run1", epochs=1).parent
    write_keras_logs(logs / "run2", epochs=1)
    with pytest.raises(HistoryError, match="holds 2 runs"):
        load_history(logs)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HistoryError, match="no TensorBoard event files"):
        load_history(tmp_path / "empty")


# --- smoothing --------------------------------------------------------------------------------


def test_smoothing_is_tensorboards_debiased_ema():
    # By hand, weight 0.5: last = 0.5 * last + 0.5 * value, divided by 1 - 0.5 ** n.
    #   1 -> last 0.5,   / 0.5   = 1
    #   3 -> last 1.75,  / 0.75  = 2.3333
    #   NaN stays NaN and does not count
    #   2 -> last 1.875, / 0.875 = 2.142857
    smoothed = smooth([1.0, 3.0, float("nan"), 2.0], 0.5)
    np.testing.assert_allclose(smoothed[[0, 1, 3]], [1.0, 1.75 / 0.75, 1.875 / 0.875])
    assert math.isnan(smoothed[2])
    np.testing.assert_array_equal(smooth([0.2, 0.5, 0.1], 0.0), [0.2, 0.5, 0.1])
    np.testing.assert_array_equal(smooth([0.3, 0.3, 0.3], 0.9), [0.3, 0.3, 0.3])  # constant
    with pytest.raises(ValueError):
        smooth([1.0, 2.0], 1.0)


# --- files other people made ------------------------------------------------------------------

needs_histories = pytest.mark.skipif(
    not HISTORIES.is_dir(), reason="../shared/data/real_models/histories is not beside this checkout"
)


@needs_histories
def test_shared_pandas_to_csv():
    history = load_history(HISTORIES / "pandas_to_csv.csv")
    assert set(history.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epochs[0] == 1 and not history.warnings


@needs_histories
def test_shared_keras2_json_old_names():
    history = load_history(HISTORIES / "keras2_acc_names.json")
    assert set(history.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert 0.5 < history.summary()["max val accuracy"] <= 1.0


@needs_histories
def test_shared_csvlogger_with_learning_rate():
    history = load_history(HISTORIES / "csvlogger_with_lr.csv")
    assert "learning_rate" in history.metrics and history.extra_metrics() == []
    assert history.summary()["max val accuracy"] > 0.98


# --- the registry reads the new formats through the card --------------------------------------


def test_registry_reads_log_folders_and_printed_logs(tmp_path):
    from models.card import ModelCard
    from models.registry import entry_for

    write_keras_logs(tmp_path / "logs")
    (tmp_path / "notebook.txt").write_text(KERAS3_LOG)
    for stem, history in (("tb", "logs"), ("nb", "notebook.txt")):
        (tmp_path / f"{stem}.keras").write_bytes(b"")  # the registry reads cards, not weights
        ModelCard(name=stem, class_names=["cat", "dog"], history=history).save(tmp_path / f"{stem}.json")
        entry = entry_for(tmp_path / f"{stem}.keras")
        assert entry.history_path is not None
        assert "val_loss" in load_history(entry.history_path, entry.name).metrics


# --- malformed files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, filename, message",
    [
        (b"", "bad.csv", "empty"),
        (b"{not json", "bad.csv", "malformed JSON"),
        (b'{"history": 3}', "bad.csv", "not a Keras history"),
        (b"epoch,foo\n0,1\n", "bad.csv", "no accuracy or loss"),
        (b"epoch,accuracy\n", "bad.csv", "no epochs"),
        (b"epoch,accuracy,loss\n0,0.5\n", "bad.csv", "different numbers of fields"),
        (b"\xff\xfe\x00garbage", "bad.csv", "not UTF-8"),
        (b"a" * (6 * 1024 * 1024), "bad.csv", "limit 5 MB"),
        (b"training went well\n", "notes.txt", "no 'Epoch N/M' lines"),
        (b"Epoch 1/3\nit is slow today\n", "log.txt", "no figures"),
    ],
)
def test_malformed_histories_get_a_clear_message(data, filename, message):
    with pytest.raises(HistoryError, match=message):
        parse_history(data, "bad", filename)
