"""A Rich progress bar with the running loss, for one epoch of a day; a no-op when disabled."""

from __future__ import annotations

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class ProgressBar:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.label: str | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, total: int, label: str) -> None:
        self.stop()
        self.label = label
        if not self.enabled:
            return
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
                                  transient=True)
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, loss=float("nan"))

    def advance(self, rows: int, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=rows, loss=loss)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._task, self.label = None, None, None
