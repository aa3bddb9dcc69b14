"""Progress of long work: a tqdm bar on a terminal, plain lines in a log."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import Session

__all__ = ["EpochReporter", "progress_bar"]

class EpochReporter:
    """Progress of a cohort's training: a tqdm bar of its steps on a terminal or in a
    notebook (with the first student's numbers of the last epoch), one line per student and
    epoch in a log, or nothing."""

    def __init__(self, sessions: list[Session], start_epoch: int, epochs: int,
                 steps_per_epoch: int, enabled: bool) -> None:
        self.epochs, self.enabled, self.bar = epochs, enabled, None
        self.cohort = len(sessions) > 1
        if enabled and (sys.stderr.isatty() or _in_notebook()):
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                lead = sessions[0].config
                description = (f"{len(sessions)} students" if self.cohort
                               else f"{lead.model} {lead.method}")
                self.bar = tqdm(total=(epochs - start_epoch) * steps_per_epoch, unit="step",
                                desc=f"{description}, epochs {start_epoch + 1}-{epochs}",
                                dynamic_ncols=True)

    def step(self) -> None:
        """One training step done (queued: the bar counts without waiting for the device)."""
        if self.bar is not None:
            self.bar.update(1)

    def epoch(self, records: list[tuple[str, dict]]) -> None:
        """``records``: (output_dir, epoch record) of each student trained this epoch."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix({"epoch": records[0][1]["epoch"], **_summary(records[0][1])})
            return
        for output_dir, record in records:
            text = "  ".join(f"{key} {value}" for key, value in _summary(record).items())
            name = f"{output_dir}  " if self.cohort else ""
            print(f"{name}epoch {record['epoch']}/{self.epochs}  {text}", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(record: dict) -> dict[str, str]:
    shown = {"loss": f"{record['loss']:.4g}"}
    for name in ("train_top1", "test_top1"):
        if name in record:
            shown[name] = f"{record[name]:.4f}"
    shown["img/s"] = f"{record['images_per_second']:,.0f}"
    return shown


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where tqdm.auto draws a widget)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def progress_bar(total: int, description: str, unit: str, enabled: bool = True):
    """A tqdm bar of ``total`` ``unit`` (disabled: counts silently)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, disable=not enabled)
