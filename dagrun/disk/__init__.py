"""The sweep on disk: what OUT holds, and what is still to do.

``layout`` names every file under OUT; ``atomic`` does every write (a unique temporary name,
then a rename); ``lock`` is the one-driver lock; ``planstore`` keeps plan.json and its index;
``runs`` reads run states; ``records`` the markers and failure records; ``trust`` what each
results.jsonl line was reduced from; ``codecheck`` which markers other stage code wrote;
``plan`` the one planner (every run with one reason); ``leases`` the workers' claims;
``fence`` the fenced writes of a run's holder; ``keeper`` the process renewing its leases;
``unrecorded`` failures a run could not record itself; ``provenance`` where a sweep came
from; ``formatversion`` the on-disk format version.

May import: the base modules (``dagrun.errors``, ``dagrun.config``, ``dagrun.progress``,
``dagrun.version``) and this wing. Nothing here runs user code or unpickles anything.
"""
