"""``dagrun worker``: join a planned sweep from any machine that sees OUT.

``loop.py`` claims and executes runs (the command's logic); ``executor.py`` is the pool of
processes that run them; ``child.py`` is the code those processes run. Claims are leases on
disk (``dagrun.disk.leases``).

May import: the base modules, the wings ``disk``, ``code``, ``run``, ``results``,
``dagrun.backends`` (its process pool) and this package.
"""

from dagrun.worker.loop import WorkerOptions, run_worker

__all__ = ["WorkerOptions", "run_worker"]
