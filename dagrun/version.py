"""dagrun's version, written in this one place (pyproject.toml and ``dagrun.__version__`` read
it), and the version of the on-disk format this dagrun writes (see ``dagrun.disk.fmt``)."""

__version__ = "0.1.0"
