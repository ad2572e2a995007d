"""The ``watchnext`` command as a process of its own (the console script and ``python -m watchnext``).

A process entry point may set process-wide state that a library must not: here OpenMP's wait
policy, which libgomp reads once, when torch loads it, hence before anything imports torch.
Waiting threads then sleep instead of spinning; on a shared or oversubscribed CPU a spinning
thread burns the core its partner needs (measured with two busy processes beside a 2-thread
training run: 2.8x faster steps with PASSIVE; on a quiet machine 0.98x; docs/performance.md,
"Training speed"). Set OMP_WAIT_POLICY yourself to override it.
"""

from __future__ import annotations

import os


def main() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from watchnext.cli import app

    app(prog_name="watchnext")


if __name__ == "__main__":
    main()
