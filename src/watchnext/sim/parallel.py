"""Trainings of an experiment spread over worker processes, with the results of one process.

Every training of an arm is independent of the others given the shared logs and its seed, and the
ranker trains on one thread (``sim_ranker.toml``: ``threads = 1``), so a 2-core machine runs two
trainings at once at nearly twice the throughput. Each worker rebuilds the experiment's
``Setup`` once from the logs already written to the output folder (the world, traffic and truth
are functions of the config's seed), then runs ``work(setup, task)`` for the tasks it is handed.
Results are bitwise the same as in one process: seeds, not scheduling, decide every draw.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

import torch

from watchnext.sim.experiment_config import Experiment

Task = TypeVar("Task")
Work = Callable[[Any, Task], Any]

_SETUP: Any = None  # the worker's Setup, built once by its initializer


def run_tasks(setup: Any, work: Work, tasks: list[Task]) -> Iterator[tuple[Task, Any]]:
    """``(task, work(setup, task))`` for every task, in completion order.

    ``setup.jobs`` processes run them (1: this process, in order). ``work`` must be a
    module-level function (it is sent to the workers by name) returning picklable results.
    """
    if setup.jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, work(setup, task)
        return
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools or locks
    with ProcessPoolExecutor(min(setup.jobs, len(tasks)), mp_context=context,
                             initializer=_start_worker,
                             initargs=(setup.experiment, setup.out, setup.dates)) as pool:
        futures = {pool.submit(_run, work, task): task for task in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _start_worker(experiment: Experiment, out: Path, dates: list[str]) -> None:
    """One thread per worker: the workers are the parallelism (the machine's cores)."""
    global _SETUP
    from watchnext.sim.setup import load

    torch.set_num_threads(1)
    _SETUP = load(experiment, out, dates, log=_quiet)


def _run(work: Work, task: Task) -> Any:
    return work(_SETUP, task)


def _quiet(_: str) -> None:
    """Workers do not print: the parent reports each finished task."""
