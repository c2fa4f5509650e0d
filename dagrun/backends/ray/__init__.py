"""The ``ray`` backend: one Ray task per run on a Ray cluster sharing OUT.

``driver.py`` submits and watches tasks; ``connect.py`` joins or starts a cluster;
``resources.py`` turns basecfg/cfg values into Ray resource requests; ``task.py`` is the code
a Ray worker runs. Ray itself is imported only when this backend is used.
"""
