"""``slurm``: a sweep as one Slurm job array of ``dagrun worker`` tasks.

``options.py`` turns basecfg ``slurm`` into sbatch arguments and the batch script;
``commands.py`` calls the Slurm tools (``sbatch``, ``squeue``, ``scancel``); ``jobs.py``
keeps the arrays of a sweep in ``OUT/.dagrun/slurm/job.json``; ``watch.py`` follows the runs
on the disk; ``driver.py`` is the backend (attached or detached); ``logs.py`` finds a run's
worker log for ``dagrun show``.
"""
