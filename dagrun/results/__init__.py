"""Results: reducing runs into results.jsonl, reading them back, tables and the HTML report.

``reduce`` writes results.jsonl; ``read`` reads a sweep's results (``dagrun results``);
``columns`` holds configs and metrics a column at a time (and ``stats``, the one definition of
a metric's mean, std and count); ``columnscache`` keeps results.jsonl's decoded columns
between reads; ``table`` sorts, filters and groups (and builds the DataFrames of
``dagrun.results_table`` and ``dagrun.read_runs``); ``search`` adds an adaptive search's
best so far, history and parameter importances; ``formats`` prints a table as text, CSV,
JSON, Markdown or LaTeX; ``html/`` is ``dagrun report``.

May import: the base modules, ``dagrun.disk``, ``dagrun.code``, ``dagrun.run`` and this wing.
"""
