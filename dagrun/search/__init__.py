"""Adaptive search from the disk (``basecfg["search"]``): the parts below the stage runner.

Layer: above ``dagrun.code``, below ``dagrun.run`` (the stage runner calls
``pruning.scope`` around a run and records ``Pruned``). ``space`` holds ``Float``/``Int``/
``Categorical`` and turns a space into a cfg; ``settings`` checks ``basecfg["search"]`` and
builds the sampler and pruner; ``trials`` reads and writes the study's records on disk;
``study`` rebuilds an in-memory Optuna study from them; ``pruning`` is ``dagrun.report``.
The driver that asks trials and runs them is ``dagrun.optimize`` (top level).
Optuna is imported only by the functions that need it (the ``[search]`` extra).
"""
