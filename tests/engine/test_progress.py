"""The progress of a cohort's training: a bar of steps on a terminal, lines in a log."""

from __future__ import annotations

import io
import sys
from types import SimpleNamespace

from perceptcoh.engine.progress import EpochReporter


def sessions(count: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(config=SimpleNamespace(model="resnet8", method="pc"))
            for _ in range(count)]


RECORD = {"epoch": 2, "loss": 0.5, "train_top1": 0.25, "images_per_second": 1000.0}


def test_on_a_terminal_the_bar_counts_every_step_of_the_epochs_left(monkeypatch):
    stream = io.StringIO()
    stream.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", stream)
    reporter = EpochReporter(sessions(3), start_epoch=1, epochs=3, steps_per_epoch=5,
                             enabled=True)
    assert reporter.bar.total == 10 and "3 students, epochs 2-3" in reporter.bar.desc
    for _ in range(5):
        reporter.step()
    reporter.epoch([("runs/a", RECORD)])
    assert reporter.bar.n == 5
    reporter.close()
    assert "loss=0.5" in stream.getvalue()


def test_in_a_log_each_student_gets_a_line_per_epoch(monkeypatch, capsys):
    reporter = EpochReporter(sessions(2), start_epoch=0, epochs=3, steps_per_epoch=5,
                             enabled=True)
    assert reporter.bar is None
    reporter.step()
    reporter.epoch([("runs/a", RECORD), ("runs/b", RECORD)])
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["runs/a  epoch 2/3  loss 0.5  train_top1 0.2500  img/s 1,000",
                     "runs/b  epoch 2/3  loss 0.5  train_top1 0.2500  img/s 1,000"]


def test_disabled_it_prints_nothing(capsys):
    reporter = EpochReporter(sessions(1), 0, 1, 5, enabled=False)
    reporter.step()
    reporter.epoch([("runs/a", RECORD)])
    reporter.close()
    assert capsys.readouterr().err == ""
