"""A corpus of code edits: small fake repositories, one per way a stage reaches code.

Each ``Shape`` is a folder of files (a workflow ``wf.py`` and the user's modules beside it),
edits to apply to them, and which of the workflow's code fingerprints (``pre``, ``fit``,
``post``) and config digests (``cfg``) the edits must change — every other one must stay
the same. ``{p}`` in names and sources is the shape's own module prefix, so every shape's
modules can be imported into one process side by side.

Shapes whose ``changed`` is empty check precision (an edit nothing reaches, a library
upgraded) or, without edits, that nothing depends on the hash seed.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

PRE = """
def pre(cfg):
    return cfg["x"]
"""

FIT = """
def fit(cfg, x):
    return x
"""

POST = """
def post(cfg, y):
    return {"y": y}
"""

TIMED = """
import functools


def timed(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper
"""

REGISTRY = """
REGISTRY = {}


def register(name):
    def deco(fn):
        REGISTRY[name] = fn
        return fn
    return deco
"""

FAKE_LIBRARY = """
def act(x):
    return x + 1


class Layer:
    def __call__(self, x):
        return x * 2
"""

SET_CONSTANT = '"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"'


def wf(top: str = "", *, pre: str = PRE, fit: str = FIT, post: str = POST,
       cfgs: str = '[{"x": 1}]') -> str:
    """A workflow file: ``top`` (imports, helpers), the three stages, basecfg and cfgs."""
    parts = [textwrap.dedent(p).strip("\n") for p in (top, pre, fit, post) if p.strip()]
    parts.append(f'basecfg = {{"out_path": "out"}}\ncfgs = {cfgs}')
    return "\n\n\n".join(parts) + "\n"


def body(code: str) -> str:
    """A ``fit`` whose body is ``code`` (one line, or dedented lines)."""
    lines = textwrap.dedent(code).strip("\n").splitlines()
    return "def fit(cfg, x):\n" + "".join(f"    {line}\n" for line in lines)


@dataclass(frozen=True)
class Shape:
    name: str
    files: dict[str, str]
    edits: tuple[tuple[str, str, str], ...] = ()  # (file, old text, new text)
    changed: frozenset[str] = field(default_factory=frozenset)  # of pre, fit, post, cfg

    @property
    def prefix(self) -> str:
        return f"{self.name}_"

    def workflow(self, root: Path) -> Path:
        return root / self.name / f"wf_{self.name}.py"

    def write(self, root: Path) -> None:
        for rel, text in self.files.items():
            path = root / self.name / self._name(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).replace("{p}", self.prefix).lstrip("\n"))

    def edit(self, root: Path) -> None:
        for rel, old, new in self.edits:
            path = root / self.name / self._name(rel)
            text = path.read_text()
            old, new = old.replace("{p}", self.prefix), new.replace("{p}", self.prefix)
            assert text.count(old) == 1, f"{self.name}: {old!r} is not once in {rel}"
            path.write_text(text.replace(old, new))

    def _name(self, rel: str) -> str:
        return f"wf_{self.name}.py" if rel == "wf.py" else rel.replace("{p}", self.prefix)


def _shape(name: str, files: dict[str, str], edits: list[tuple[str, str, str]],
           changed: set[str]) -> Shape:
    return Shape(name, files, tuple(edits), frozenset(changed))


SETTINGS = "SCALE = 2\nOTHER = 1\n"
EDIT_SETTINGS = ("{p}settings.py", "SCALE = 2", "SCALE = 3")
TWO_OPS = '[{"x": 1, "op": "double"}]'

LAZY_PACKAGE = {  # a package whose submodule appears through its ``__getattr__``
    "{p}pkg/__init__.py": "import importlib\n\n\ndef __getattr__(name):\n"
                          '    if name in ("model", "other"):\n'
                          '        return importlib.import_module(f"{__name__}.{name}")\n'
                          "    raise AttributeError(name)\n",
    "{p}pkg/model.py": "def score(x):\n    return x * 2\n",
    "{p}pkg/other.py": "def unused(x):\n    return x - 1\n",
    "wf.py": wf("import {p}pkg", fit=body("return {p}pkg.model.score(x)"))}

POST_ONLY = {  # fit reads an attribute named like the stage post
    "{p}helpers.py": "def fit_helper(x):\n    return x + 1\n\n\n"
                     "def post_helper(y):\n    return y * 2\n",
    "wf.py": wf("from types import SimpleNamespace\n\nimport {p}helpers\n\n"
                "API = SimpleNamespace(post=abs)",
                fit=body("return API.post({p}helpers.fit_helper(x))"),
                post='def post(cfg, y):\n    return {"y": {p}helpers.post_helper(y)}\n')}

SHAPES: list[Shape] = [
    # -- what a stage reaches (missed before) -------------------------------------------------
    _shape("const_from", {"{p}settings.py": SETTINGS,
                          "wf.py": wf("from {p}settings import SCALE",
                                      fit=body("return x * SCALE"))},
           [EDIT_SETTINGS], {"fit"}),
    _shape("const_attr", {"{p}settings.py": SETTINGS,
                          "wf.py": wf("import {p}settings",
                                      fit=body("return x * {p}settings.SCALE"))},
           [EDIT_SETTINGS], {"fit"}),
    _shape("submodule_chain", {"{p}lab/__init__.py": "", "{p}lab/core.py":
                               "def train(x):\n    return x + 1\n",
                               "wf.py": wf("import {p}lab.core",
                                           fit=body("return {p}lab.core.train(x)"))},
           [("{p}lab/core.py", "x + 1", "x + 2")], {"fit"}),
    _shape("inherited", {"{p}base.py": "class Base:\n    def run(self, x):\n        return x * 2\n",
                         "wf.py": wf("""
                             from {p}base import Base


                             class Child(Base):
                                 pass
                             """, fit=body("return Child().run(x)"))},
           [("{p}base.py", "x * 2", "x * 3")], {"fit"}),
    _shape("registry_dict", {"wf.py": wf("""
               def make_a(x):
                   return x + 1


               MODELS = {"a": make_a}
               """, fit=body('return MODELS["a"](x)'))},
           [("wf.py", "x + 1", "x + 5")], {"fit"}),
    _shape("registry_decorator", {
        "{p}reg.py": REGISTRY,
        "{p}models.py": 'from {p}reg import register\n\n\n@register("a")\ndef make_a(x):\n'
                        "    return x + 1\n",
        "wf.py": wf("import {p}models  # noqa: F401\nfrom {p}reg import REGISTRY",
                    fit=body('return REGISTRY["a"](x)'))},
        [("{p}models.py", "x + 1", "x + 7")], {"fit"}),
    _shape("wrapped", {"{p}deco.py": TIMED, "wf.py": wf("""
               from {p}deco import timed


               def inner(x):
                   return x + 1


               @timed
               def helper(x):
                   return inner(x)
               """, fit=body("return helper(x)"))},
           [("wf.py", "x + 1", "x + 2")], {"fit"}),
    _shape("decorator_body", {"{p}deco.py": TIMED, "wf.py": wf("""
               from {p}deco import timed


               @timed
               def helper(x):
                   return x + 1
               """, fit=body("return helper(x)"))},
           [("{p}deco.py", "return fn(*args, **kwargs)", "return fn(*args, **kwargs) * 2")],
           {"fit"}),
    _shape("lru_cache", {"wf.py": wf("""
               import functools


               @functools.lru_cache(maxsize=None)
               def table(n):
                   return n * 3
               """, fit=body("return table(x)"))},
           [("wf.py", "n * 3", "n * 4")], {"fit"}),
    _shape("decorated_method", {"{p}deco.py": TIMED, "wf.py": wf("""
               from {p}deco import timed


               def rate():
                   return 2


               class Model:
                   @timed
                   def step(self, x):
                       return x * rate()
               """, fit=body("return Model().step(x)"))},
           [("wf.py", "return 2", "return 3")], {"fit"}),
    _shape("derived_const", {"wf.py": wf("N = 4\nHIDDEN = N * 2", fit=body("return x * HIDDEN"))},
           [("wf.py", "N = 4", "N = 5")], {"fit"}),
    _shape("default_arg", {"{p}settings.py": SETTINGS, "wf.py": wf("""
               from {p}settings import SCALE


               def scaled(x, scale=SCALE):
                   return x * scale
               """, fit=body("return scaled(x)"))},
           [EDIT_SETTINGS], {"fit"}),
    _shape("closure_factory", {"wf.py": wf("""
               def make_fit(lr):
                   def fit(cfg, x):
                       return x * lr
                   return fit


               fit = make_fit(lr=0.5)
               """, fit="")},
           [("wf.py", "lr=0.5", "lr=0.25")], {"fit"}),
    _shape("bound_method", {"wf.py": wf("""
               class Model:
                   def __init__(self, lr):
                       self.lr = lr

                   def fit(self, cfg, x):
                       return x * self.lr


               fit = Model(lr=0.5).fit
               """, fit="")},
           [("wf.py", "lr=0.5", "lr=0.25")], {"fit"}),
    _shape("singleton", {"{p}tok.py": "class Tokenizer:\n    def encode(self, x):\n"
                                      "        return x + 1\n",
                         "wf.py": wf("from {p}tok import Tokenizer\n\nTOKENIZER = Tokenizer()",
                                     fit=body("return TOKENIZER.encode(x)"))},
           [("{p}tok.py", "x + 1", "x + 2")], {"fit"}),
    _shape("property", {"wf.py": wf("""
               def base_rate():
                   return 0.5


               class Model:
                   @property
                   def rate(self):
                       return base_rate() * 2
               """, fit=body("return x * Model().rate"))},
           [("wf.py", "return 0.5", "return 0.25")], {"fit"}),
    _shape("lazy_import", {
        "{p}lab/__init__.py": "", "{p}lab/consts.py": "K = 1\n",
        "{p}lab/extra.py": "from {p}lab.consts import K\n\n\ndef go(x):\n    return x + K\n",
        "wf.py": wf(fit=body("import {p}lab.extra\n\nreturn {p}lab.extra.go(x)"))},
        [("{p}lab/consts.py", "K = 1", "K = 2")], {"fit"}),
    _shape("lazy_import_body", {
        "{p}lab/__init__.py": "",
        "{p}lab/extra.py": "def go(x):\n    return x + 1\n",
        "wf.py": wf(fit=body("from {p}lab.extra import go\n\nreturn go(x)"))},
        [("{p}lab/extra.py", "x + 1", "x - 1")], {"fit"}),
    _shape("lazy_submodule_getattr", LAZY_PACKAGE,  # pkg.model made by the package's
           [("{p}pkg/model.py", "x * 2", "x * 3")], {"fit"}),  # __getattr__ (PEP 562)
    _shape("lazy_submodule_other", LAZY_PACKAGE,  # a submodule nothing reaches
           [("{p}pkg/other.py", "x - 1", "x - 2")], set()),
    _shape("submodule_imported_later", {  # pre imports lab.core; fit reads it off lab
        "{p}lab/__init__.py": "", "{p}lab/core.py": "def train(x):\n    return x + 1\n",
        "wf.py": wf("import {p}lab", pre="def pre(cfg):\n    import {p}lab.core\n\n"
                    '    return cfg["x"]\n', fit=body("return {p}lab.core.train(x)"))},
        [("{p}lab/core.py", "x + 1", "x + 2")], {"pre", "fit"}),
    _shape("getattr_module", {"{p}ops.py": "def double(x):\n    return x * 2\n",
                              "wf.py": wf("import {p}ops",
                                          fit=body('return getattr({p}ops, cfg["op"])(x)'),
                                          cfgs=TWO_OPS)},
           [("{p}ops.py", "x * 2", "x * 3")], {"fit"}),
    _shape("import_module", {
        "{p}plugins/__init__.py": "", "{p}plugins/a.py": "def run(x):\n    return x + 1\n",
        "wf.py": wf("import importlib",
                    fit=body('return importlib.import_module("{p}plugins." + cfg["name"]).run(x)'),
                    cfgs='[{"x": 1, "name": "a"}]')},
        [("{p}plugins/a.py", "x + 1", "x + 2")], {"fit"}),
    _shape("library_name_swapped", {"wf.py": wf("from math import floor as rounding",
                                                fit=body("return rounding(x / 2)"))},
           [("wf.py", "floor as", "ceil as")], {"fit"}),
    # -- config values --------------------------------------------------------------------
    _shape("class_in_cfg", {"wf.py": wf("""
               class Net:
                   def forward(self, x):
                       return x * 2
               """, fit=body('return cfg["model"]().forward(x)'),
               cfgs='[{"x": 1, "model": Net}]')},
           [("wf.py", "x * 2", "x * 3")], {"cfg"}),
    _shape("instance_in_cfg", {"wf.py": wf("""
               class Net:
                   def __init__(self, scale):
                       self.scale = scale

                   def forward(self, x):
                       return x * self.scale + 1
               """, fit=body('return cfg["model"].forward(x)'),
               cfgs='[{"x": 1, "model": Net(2)}]')},
           [("wf.py", "+ 1", "+ 2")], {"cfg"}),
    _shape("lambda_defaults_in_cfg", {"wf.py": wf(
        "ALPHAS = [1, 2]", fit=body('return cfg["f"](x)'),
        cfgs='[{"x": 1, "f": f} for f in [lambda x, a=a: x * a for a in ALPHAS]]')},
        [("wf.py", "ALPHAS = [1, 2]", "ALPHAS = [1, 3]")], {"cfg"}),
    _shape("closure_in_cfg", {"wf.py": wf("""
               def make(k):
                   return lambda x: x * k


               SCALES = (1, 2)
               """, fit=body('return cfg["f"](x)'),
               cfgs='[{"x": 1, "f": make(k)} for k in SCALES]')},
           [("wf.py", "SCALES = (1, 2)", "SCALES = (1, 3)")], {"cfg"}),
    _shape("kwdefaults_in_cfg", {"wf.py": wf("""
               def make(k0):
                   def scaled(x, *, k=k0):
                       return x * k
                   return scaled
               """, fit=body('return cfg["f"](x)'), cfgs='[{"x": 1, "f": make(2)}]')},
           [("wf.py", "make(2)", "make(3)")], {"cfg"}),
    _shape("ordered_dict_in_cfg", {"wf.py": wf(
        "from collections import OrderedDict",
        cfgs='[{"x": 1, "layers": OrderedDict([("a", 1), ("b", 2)])}]')},
        [("wf.py", '[("a", 1), ("b", 2)]', '[("b", 2), ("a", 1)]')], {"cfg"}),
    # -- precision: what an edit must not touch -------------------------------------------
    _shape("attribute_named_like_a_stage", {"wf.py": wf(
        "import numpy as np",
        pre='def pre(cfg):\n    return np.polynomial.Polynomial.fit([0, 1, 2], [0, 1, 2], 1)'
            '(cfg["x"])\n',
        fit=body("return x * 2"))},
        [("wf.py", "x * 2", "x * 3")], {"fit"}),
    _shape("post_helper_only", POST_ONLY, [("{p}helpers.py", "y * 2", "y * 3")], {"post"}),
    _shape("post_only", POST_ONLY, [("wf.py", '{"y": ', '{"z": 1, "y": ')], {"post"}),
    _shape("unreachable", {
        "{p}helpers.py": "class Model:\n    def train(self, x):\n        return x\n\n\n"
                         "def build():\n    return Model()\n\n\n"
                         "def train(x):\n    return x * 100\n",
        "wf.py": wf("import {p}helpers",
                    fit=body("model = {p}helpers.build()\nreturn model.train(x)"))},
        [("{p}helpers.py", "x * 100", "x * 200")], set()),
    _shape("library_code", {
        "libs/{p}fakelib.py": FAKE_LIBRARY,
        "libs/{p}fakelib-1.0.dist-info/METADATA": "Name: fakelib\nVersion: 1.0\n",
        "libs/{p}fakelib-1.0.dist-info/RECORD": "{p}fakelib.py,,\n",
        "wf.py": wf("""
            import os
            import sys

            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "libs"))

            import {p}fakelib  # noqa: E402
            """, fit=body("return {p}fakelib.act(x)"),
            cfgs='[{"x": 1, "act": {p}fakelib.act, "layer": {p}fakelib.Layer}]')},
        [("libs/{p}fakelib.py", "x + 1", "x + 2"), ("libs/{p}fakelib.py", "x * 2", "x * 3")],
        set()),
    _shape("lambda_own_node_in_cfg", {"wf.py": wf(
        fit=body('return cfg["f"](x)'),
        cfgs='[{"x": 1, "f": lambda x, i=i: x * i} for i in range(3)]')},
        [("wf.py", "range(3)", "range(5)")], set()),
    # -- no edit: the same in every process, whatever the hash seed -----------------------
    _shape("exec_stage", {"wf.py": wf(
        'SOURCE = """\ndef fit(cfg, x):\n    return x in {' + SET_CONSTANT + '}\n"""\n\n'
        "exec(SOURCE)", fit="")}, [], set()),
    _shape("multiline_lambda_in_cfg", {"wf.py": wf(
        fit=body('return cfg["f"](x)'),
        cfgs='[\n    {"x": 1,\n     "f": lambda x: x in {' + SET_CONSTANT + '}},\n]')},
        [], set()),
]

BY_NAME = {shape.name: shape for shape in SHAPES}

#: Prints, for every shape's workflow under the folder argv[1], the fingerprints of its
#: stages and the digests of its cfgs (one JSON object), and which dagrun it imported.
PRINT = r"""
import json, os, sys
import dagrun
from dagrun.code.digest import config_digest
from dagrun.code.fingerprint import fingerprint
from dagrun.code.workflow import import_workflow_file

root = sys.argv[1]
out = {"_dagrun": os.path.dirname(dagrun.__file__)}
for name in sorted(os.listdir(root)):
    wf = import_workflow_file(os.path.join(root, name, "wf_%s.py" % name))
    out[name] = {stage: fingerprint(getattr(wf, stage)) for stage in ("pre", "fit", "post")}
    out[name]["cfg"] = [config_digest(cfg) for cfg in wf.cfgs]
print(json.dumps(out))
"""
