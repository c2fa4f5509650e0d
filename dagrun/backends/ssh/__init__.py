"""The ``ssh`` backend (alias ``malocher``): a pool of machines sharing OUT, reached over ssh.

Driver side: ``driver.py`` (the backend), ``command.py`` (hosts and ssh command lines),
``hosts.py`` (one multiplexed connection per host), ``session.py`` (one run = one session).
Both sides: ``protocol.py`` (the JSON lines they exchange). Host side: ``remote.py``
(``python -m dagrun.backends.ssh.remote``), which imports nothing of the other backends.
"""
