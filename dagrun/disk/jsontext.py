"""Indented JSON text, byte for byte what ``json.dumps(obj, indent=n)`` writes, made faster.

Python's ``json`` encodes with its C encoder only without ``indent``; with it (``config.json``
is written indented, once per run) every value goes through the pure-Python encoder, about
twenty microseconds for a cfg of a few keys. ``dumps`` builds the same text from the C
helpers for strings and the ``repr`` of numbers, for values of exactly the types ``json``
writes as they are (``dict`` with ``str`` keys, ``list``, ``tuple``, ``str``, ``int``,
``float``, ``bool``, ``None``); anything else (a subclass, a non-string key, a cycle, a
``default`` to call) is handed to ``json.dumps`` whole, so the text never differs.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

_INF = float("inf")


class _Other(Exception):
    """A value the fast path does not write (``json.dumps`` writes the whole text)."""


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INF:
        return "Infinity"
    if value == -_INF:
        return "-Infinity"
    return float.__repr__(value)


def dumps(obj: Any, indent: int = 2) -> str:
    """``json.dumps(obj, indent=indent)`` (its other arguments at their defaults)."""
    try:
        return _Indented(indent).text(obj, 0)
    except (_Other, RecursionError):
        return json.dumps(obj, indent=indent)


class _Indented:
    __slots__ = ("indent", "pads")

    def __init__(self, indent: int) -> None:
        self.indent = indent
        self.pads = ["\n"]

    def _pad(self, level: int) -> str:
        pads = self.pads
        while len(pads) <= level:
            pads.append("\n" + " " * (self.indent * len(pads)))
        return pads[level]

    def text(self, value: Any, level: int) -> str:
        kind = type(value)
        if kind is str:
            return encode_basestring_ascii(value)
        if value is None:
            return "null"
        if value is True:
            return "true"
        if value is False:
            return "false"
        if kind is int:
            return int.__repr__(value)
        if kind is float:
            return _float(value)
        if kind is dict:
            if not value:
                return "{}"
            inner = self._pad(level + 1)
            items = []
            for key, item in value.items():
                if type(key) is not str:
                    raise _Other
                items.append(f"{encode_basestring_ascii(key)}: {self.text(item, level + 1)}")
            return "{" + inner + ("," + inner).join(items) + self._pad(level) + "}"
        if kind is list or kind is tuple:
            if not value:
                return "[]"
            inner = self._pad(level + 1)
            return ("[" + inner + ("," + inner).join([self.text(v, level + 1) for v in value])
                    + self._pad(level) + "]")
        raise _Other


_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)  # None: no C accelerator

_default = json.JSONEncoder().default
# json.dumps(obj) builds a C encoder per call; these are made once (no circular check: a
# cycle ends in RecursionError, where json.dumps says ValueError; dagrun writes no cycles)
_ENCODE = None if _c_make_encoder is None else _c_make_encoder(
    None, _default, encode_basestring_ascii, None, ": ", ", ", False, False, True)
_ENCODE_STRICT = None if _c_make_encoder is None else _c_make_encoder(
    None, _default, encode_basestring_ascii, None, ": ", ", ", False, False, False)


def text(obj: Any, indent: int | None) -> str:
    """``json.dumps(obj)`` without ``indent``, ``json.dumps(obj, indent=indent)`` with it:
    what the atomic writers of JSON files write."""
    return compact(obj) if indent is None else dumps(obj, indent)


def compact(obj: Any) -> str:
    """``json.dumps(obj)``, through one encoder made once (markers: three a run)."""
    if _ENCODE is None or type(obj) is not dict:
        return json.dumps(obj)
    return "".join(_ENCODE(obj, 0))


def compact_strict(obj: Any) -> str:
    """``json.dumps(obj, allow_nan=False)`` (results lines), through one encoder."""
    if _ENCODE_STRICT is None or type(obj) is not dict:
        return json.dumps(obj, allow_nan=False)
    return "".join(_ENCODE_STRICT(obj, 0))
