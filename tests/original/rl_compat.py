"""Import the authors' MAML-RL code (cbfinn/maml_rl, a fork of rllab) unchanged on today's stack.

Call `install()` in a child process that runs nothing of ours: it does what `tf1_compat.install()`
does (graph mode, `import tensorflow` -> tf.compat.v1) and then provides what the rllab fork
imports but a current Python 3.11 / numpy 2 / TF 2 environment no longer has. Nothing here is
algorithm:

- `theano` (rllab's Theano half; only its symbolic helpers, which the TF code never calls, use
  it), `lasagne`: empty modules, any use raises.
- `joblib` (rllab's logger snapshots and worker pools; `joblib.pool.MemmapingPool` is gone from
  joblib itself), `pyprind` (progress bars), `path` (`path.Path`), `cached_property`: the
  pieces imported, as no-ops or with the standard library's equivalent.
- `scipy.signal.lfilter`: used by rllab's `special.discount_cumsum` as
  `lfilter([1], [1, -gamma], x[::-1])[::-1]`. scipy is not a dependency of this project; if it
  is not importable, an exact float64 implementation of that one-pole filter
  (y[n] = x[n] + gamma * y[n-1], scipy's recurrence) stands in; anything else raises.
  `scipy.optimize` (imported by `PenaltyLbfgsOptimizer`, which MAML-TRPO does not use) is an
  empty stand-in.
- `inspect.getargspec` (removed in Python 3.11; rllab's `Serializable` and the TF layers use it):
  the Python 2-style 4-tuple from `inspect.getfullargspec`.
- `numpy.cast` (removed in numpy 2; `FiniteDifferenceHvp` computes its eps with
  `np.cast['float32'](...)`): numpy 1's definition, `asarray(x).astype(key)`.
- rllab's logger is the real one (`rllab.misc.logger`): the driver reads its progress CSV.

The authors' files are imported from `shared/reference/cbfinn_maml_rl` unchanged.
"""
import collections
import functools
import importlib.abc
import importlib.util
import inspect
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import tf1_compat  # noqa: E402

MAML_RL_DIR = tf1_compat.MAML_RL_DIR


def _module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _unavailable(what):
    def fail(*args, **kwargs):
        raise NotImplementedError(f"rl_compat: {what} is not available (the TF code path never uses it)")
    return fail


class _Anything(types.ModuleType):
    """A module whose every attribute and submodule is another such module (Theano/Lasagne
    stand-in: importable, inert; calling anything from it raises)."""

    __path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        full = f"{self.__name__}.{name}"
        if full not in sys.modules:
            sys.modules[full] = _Anything(full)
        return sys.modules[full]

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(f"rl_compat: {self.__name__} (Theano/Lasagne) is not available")


class _AnythingFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of `theano...` / `lasagne...` yield `_Anything` modules."""

    roots = ("theano", "lasagne")

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Anything(spec.name)

    def exec_module(self, module):
        pass


def one_pole_lfilter(b, a, x, axis=-1, zi=None):
    """scipy.signal.lfilter for b = [1], a = [1, -gamma] (what rllab's discount_cumsum uses):
    y[n] = x[n] + gamma * y[n-1], in float64 like scipy for real input."""
    b, a = np.atleast_1d(np.asarray(b, np.float64)), np.atleast_1d(np.asarray(a, np.float64))
    if zi is not None or b.shape != (1,) or a.shape != (2,) or b[0] != 1 or a[0] != 1:
        raise NotImplementedError("rl_compat lfilter: only lfilter([1], [1, -gamma], x) is provided")
    x = np.moveaxis(np.asarray(x, np.float64), axis, 0)
    y = np.empty_like(x)
    gamma = -a[1]
    running = np.zeros(x.shape[1:])
    for n in range(len(x)):
        running = x[n] + gamma * running
        y[n] = running
    return np.moveaxis(y, 0, axis)


def _getargspec(func):
    spec = inspect.getfullargspec(func)
    return _ArgSpec(spec.args, spec.varargs, spec.varkw, spec.defaults)


_ArgSpec = collections.namedtuple("ArgSpec", "args varargs keywords defaults")


class _Cast(dict):
    def __missing__(self, key):
        return lambda x, k=key: np.asarray(x).astype(k)


class _ProgBar:
    def __init__(self, *args, **kwargs):
        self.active = False

    def update(self, *args, **kwargs):
        pass

    def stop(self):
        pass


def _stub_third_party():
    if not any(isinstance(f, _AnythingFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AnythingFinder())
    try:
        import joblib  # noqa: F401
        import joblib.pool  # noqa: F401
    except ImportError:
        joblib = _module("joblib", dump=_unavailable("joblib.dump"), load=_unavailable("joblib.load"))
        joblib.pool = _module("joblib.pool", MemmapingPool=_unavailable("joblib.pool.MemmapingPool"))
    try:
        import pyprind  # noqa: F401
    except ImportError:
        _module("pyprind", ProgBar=_ProgBar)
    try:
        import path  # noqa: F401
    except ImportError:
        import pathlib
        _module("path", Path=pathlib.Path)
    try:
        import cached_property  # noqa: F401
    except ImportError:
        _module("cached_property", cached_property=functools.cached_property)
    try:
        import scipy.signal  # noqa: F401
    except ImportError:
        scipy = _module("scipy", __path__=[])
        scipy.signal = _module("scipy.signal", lfilter=one_pole_lfilter)
        # PenaltyLbfgsOptimizer (imported by maml_npo, unused by MAML-TRPO) imports scipy.optimize.
        scipy.optimize = _module("scipy.optimize", fmin_l_bfgs_b=_unavailable("scipy.optimize.fmin_l_bfgs_b"))


def install():
    """Graph-mode TF1 + the stand-ins above; puts the authors' repository on sys.path. Idempotent."""
    tf = tf1_compat.install()
    _stub_third_party()
    if not hasattr(inspect, "getargspec"):
        inspect.getargspec = _getargspec
    if "cast" not in np.__dict__:
        np.cast = _Cast()
    if str(MAML_RL_DIR) not in sys.path:
        sys.path.insert(0, str(MAML_RL_DIR))
    return tf

