"""One run's execution: the stage runner and everything around a stage call.

``stages`` is the only code that calls user functions (every backend uses it); ``capture``
tees a stage's output into its log; ``proctree`` finds and kills a run's processes;
``signals`` turns stop signals into exit codes; ``gpus`` assigns GPU slots; ``failures``
builds the records of runs that could not record their own failure; ``summary`` is what a
sweep returns (``dagrun.Summary``).

May import: the base modules, ``dagrun.disk``, ``dagrun.code`` and this wing.
"""
