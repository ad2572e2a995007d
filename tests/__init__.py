"""The test suite is a process entry point of its own: like the `watchnext` command, it makes
OpenMP's waiting threads sleep instead of spin (read once, when torch loads, hence here, before
any test module imports torch), which matters on CI's two shared cores and in the subprocesses
(torchrun workers, CLI runs) that tests start, which inherit it."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
