"""One run's execution: the stage runner and everything around a stage call.

``stages`` is the only code that calls user functions (every backend uses it); ``capture``
tees a stage's output into its log; ``proctree`` finds and kills a run's processes;
``signals`` turns stop signals into exit codes; ``gpus`` assigns GPU slots; ``failures``
builds the records of runs that could not record their own failure; ``summary`` is what a
sweep returns (``dagrun.Summary``); ``pending`` announces a run executed in the driver's own
process, and ``supervisor`` is the ``dagrun`` command's process that executes a sweep in a
child and records a run whose stage ended that child.

May import: the base modules, ``dagrun.disk``, ``dagrun.code`` and this wing.
"""
