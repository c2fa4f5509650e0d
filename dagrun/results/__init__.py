"""Results: reducing runs into results.jsonl, reading them back, tables and the HTML report.

``reduce`` writes results.jsonl; ``read`` reads a sweep's results (``dagrun results``);
``columns`` holds configs and metrics a column at a time; ``columnscache`` keeps
results.jsonl's decoded columns between reads; ``table`` sorts, filters and groups (and
builds the DataFrame of ``dagrun.results_table``); ``formats`` prints a table as text, CSV,
JSON or Markdown; ``html/`` is ``dagrun report``.

May import: the base modules, ``dagrun.disk``, ``dagrun.code``, ``dagrun.run`` and this wing.
"""
