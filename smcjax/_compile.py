"""How smcjax compiles its samplers: ``jax.jit`` with XLA options chosen for SMC kernels.

The one option set here is the CPU vector width. XLA CPU asks LLVM for 256-bit vectors by
default, even on processors with AVX-512 (wider vectors used to lower the clock of older Intel
server chips). A particle-filter step is made of many short element-wise loops over the
particles (the counter-based random bits, the normal transform, the weights, the cumulative
sums of resampling), and on an AVX-512 machine (AMD EPYC, Zen 5) 512-bit vectors made a
bootstrap-filter step 12-15 % faster at N = 10^3 and 10^4. The particles, weights and
evidence stayed bitwise identical in every sampler compared (filters with all six schemes,
tempered, waste-free and data-tempered SMC, FKC and twisted diffusion samplers); only
weighted sums over a state axis (the filtering moments of a 3-d state) changed in the last
bit. Tempered and waste-free SMC and the diffusion samplers ran within a few per cent either
way (-4 % to +6 % in two quick runs); data tempering ran 5-7 % slower in both and keeps a
plain ``jax.jit``. On a processor without AVX-512 the option
changes nothing. When JAX's default backend is not the CPU (a GPU or TPU), :func:`jit` uses a
plain ``jax.jit``.

The environment variable ``SMCJAX_CPU_VECTOR_WIDTH``, read when smcjax is imported, overrides
the choice: ``512`` (the default), ``256`` or ``128`` bits, or ``xla`` to leave XLA's own
default. Code that compiles the engine itself (e.g. ``jax.jit`` around :func:`smcjax.smc_run`)
can pass :func:`compiler_options` to ``jax.jit(..., compiler_options=...)`` for the same
effect.

JAX accepts compile options only on a top-level ``jax.jit``. A sampler called inside the
user's own ``jax.jit`` (or ``vmap``, ``grad``, ``lax.scan``) is therefore compiled as part of
the user's program, with the user's options: :func:`jit` keeps a second, plain ``jax.jit`` of
the same function for that case. The particles, weights and evidence are the same either
way (see above for the last bit of weighted sums over a state axis).
"""

from __future__ import annotations

import functools
import os

import jax

__all__ = ["compiler_options", "jit"]

_ENV = "SMCJAX_CPU_VECTOR_WIDTH"
_WIDTHS = ("128", "256", "512")


def compiler_options() -> dict:
    """The XLA compile options smcjax's own ``jax.jit`` calls use (a new dict each call).

    Raises:
      ValueError: if ``SMCJAX_CPU_VECTOR_WIDTH`` is set to anything but 128, 256, 512 or xla.

    Example:
      >>> compiler_options()  # with SMCJAX_CPU_VECTOR_WIDTH unset
      {'xla_cpu_prefer_vector_width': 512}
    """
    value = os.environ.get(_ENV, "512").strip().lower()
    if value == "xla":
        return {}
    if value not in _WIDTHS:
        raise ValueError(f"{_ENV} must be one of {', '.join(_WIDTHS)} or 'xla', got {value!r}")
    return {"xla_cpu_prefer_vector_width": int(value)}


_OPTIONS = compiler_options()  # read once, at import; a bad value fails the import clearly


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    return (value,) if isinstance(value, int | str) else tuple(value)


class _Jitted:
    """A function compiled with :func:`compiler_options` when called at top level, and as a
    plain ``jax.jit`` when called while JAX traces an enclosing transformation."""

    def __init__(self, fun, kwargs):
        functools.update_wrapper(self, fun)
        # Static arguments are hashable Python values, never tracers: not searched below.
        self._static_nums = frozenset(_as_tuple(kwargs.get("static_argnums")))
        self._static_names = frozenset(_as_tuple(kwargs.get("static_argnames")))
        self._plain = jax.jit(fun, **kwargs)
        self._tuned = jax.jit(fun, compiler_options=dict(_OPTIONS), **kwargs) if _OPTIONS \
            else self._plain

    def __call__(self, *args, **kwargs):
        # The options are CPU options: on a GPU or TPU default backend the plain jit runs.
        if self._tuned is self._plain or jax.default_backend() != "cpu" \
                or self._under_transformation(args, kwargs):
            return self._plain(*args, **kwargs)
        try:
            return self._tuned(*args, **kwargs)
        except ValueError as err:
            # Concrete arguments, but inside an enclosing jit (e.g. closed-over arrays): JAX
            # refuses compile options on a nested jit; it raises before compiling anything.
            if "compiler_options" not in str(err):
                raise
            return self._plain(*args, **kwargs)

    def __getattr__(self, name):
        # ``lower``, ``trace``, ``eval_shape`` and the like: those of the top-level compilation.
        tuned = self.__dict__.get("_tuned")
        if tuned is None:
            raise AttributeError(name)
        return getattr(tuned, name)

    def _under_transformation(self, args, kwargs) -> bool:
        traced = ([a for i, a in enumerate(args) if i not in self._static_nums],
                  [v for k, v in kwargs.items() if k not in self._static_names])
        return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(traced))


def jit(fun=None, **kwargs):
    """``jax.jit`` with :func:`compiler_options` at top level (see the module docstring);
    usable as ``jit(f, ...)``, ``@jit`` or ``partial(jit, ...)``."""
    if fun is None:
        return lambda f: jit(f, **kwargs)
    return _Jitted(fun, kwargs)
