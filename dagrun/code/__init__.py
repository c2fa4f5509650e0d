"""The user's code: loading a workflow, the code snapshot, fingerprints and config digests.

``workflow`` loads workflow files and pickles the workflow (``workflow.pkl``); ``snapshot``
copies the workflow's code into OUT/.dagrun and imports that copy wherever stages run;
``encoding`` is the typed value encoding both digests share; ``fingerprint`` hashes stage
code; ``digest`` is the content digest of a config; ``safety`` decides which pickles may be
loaded.

May import: the base modules, ``dagrun.disk`` and this wing.
"""
