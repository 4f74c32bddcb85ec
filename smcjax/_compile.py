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

**Small problems run on one thread.** XLA CPU splits an element-wise loop across its threads
when its cost model rates the loop above about 2·10^5 operations; a bootstrap-filter step at
N = 10^3 has one such loop (the move, with its random bits), at N = 10^4 a few. Each split
hands half the loop to a pool thread and waits for it. On a 2-vCPU virtual machine (Intel
Xeon, family 6 model 207) that hand-off cost more than it saved: a 1-d linear-Gaussian filter
step took 13.4-14.2 ns per particle unsplit against 16-21 ns split at N = 10^3 (best of
150-200 interleaved runs in one process), 9.9 against 13.3 at N = 10^4; at N = 5·10^4 and
above the split pays (10^6: 9.0 against 14.0). An FKC and a twisted diffusion sampler at
N = 10^3 ran 20 and 35 % faster unsplit; tempered SMC on the logistic regression at
N = 10^3, whose likelihood costs about 2·10^4 operations per particle, ran 1.6 times slower,
and on the 20-d Gaussian with random-walk moves 1.4 times slower (the same with MALA), so
the tempering samplers keep XLA's choice.

So the size that matters is the work of a step, not N. The samplers that know theirs
(:func:`smcjax.particle_filter`, :func:`smcjax.diffusion.fkc_sample`,
:func:`smcjax.diffusion.twisted_sample`) estimate it once per model as N times XLA's own cost
estimate of one particle's step (flops and transcendentals of the move and the potential,
plus the particle's scalars; :func:`smcjax.engine.particle_step_work`), and compile with
XLA's ``cpu-parallel-task-assigner`` pass disabled when it is at most
:func:`serial_work_bound` (default 3·10^6: the 1-d linear-Gaussian filter, 180-200 per
particle with its random bits, up to N of about 15 000). The loops are the same, unsplit. The
particle filters' outputs came out bitwise identical (1152 arrays: three methods, six
schemes, two ESS thresholds, 1-d and 3-d models, both normals) and so did FKC's (1-d and 2-d,
with and without control); the 2-d twisted sampler's did not: LLVM vectorises an unsplit loop
with a sum over the state axis differently, the rounding moves, and resampling then takes
other paths (its statistical tests pass on both). ``SMCJAX_CPU_SERIAL_WORK`` (read at import)
sets the bound; 0 turns this off. Passes that ``XLA_FLAGS`` already disables stay disabled.
"""

from __future__ import annotations

import functools
import os

import jax

__all__ = ["compiler_options", "jit", "serial_work_bound"]

_ENV = "SMCJAX_CPU_VECTOR_WIDTH"
_WIDTHS = ("128", "256", "512")


_SERIAL_ENV = "SMCJAX_CPU_SERIAL_WORK"
_SERIAL_DEFAULT = 3_000_000
_SPLIT_PASS = "cpu-parallel-task-assigner"


def serial_work_bound() -> int:
    """The largest step, in XLA cost units (N times one particle's flops, transcendentals and
    scalars), that smcjax compiles without XLA CPU's splitting of loops across threads (see
    the module docstring).

    Raises:
      ValueError: if ``SMCJAX_CPU_SERIAL_WORK`` is not a non-negative integer.

    Example:
      >>> serial_work_bound()  # with SMCJAX_CPU_SERIAL_WORK unset
      3000000
    """
    value = os.environ.get(_SERIAL_ENV, str(_SERIAL_DEFAULT)).strip().replace("_", "")
    if not value.isdigit():
        raise ValueError(f"{_SERIAL_ENV} must be a non-negative integer, got {value!r}")
    return int(value)


def _disabled_passes() -> str:
    """``xla_disable_hlo_passes`` with the loop splitter added. A compile option replaces the
    list that ``XLA_FLAGS`` gives, so the passes named there are kept."""
    named = []
    for token in os.environ.get("XLA_FLAGS", "").split():
        flag, _, value = token.partition("=")
        if flag == "--xla_disable_hlo_passes":
            named += [p for p in value.split(",") if p]
    return ",".join(dict.fromkeys([*named, _SPLIT_PASS]))


def compiler_options(step_work: float | None = None) -> dict:
    """The XLA compile options smcjax's own ``jax.jit`` calls use (a new dict each call).

    Args:
      step_work: the work of one step in XLA cost units (N times
        :func:`smcjax.engine.particle_step_work`), if known. At most
        :func:`serial_work_bound`, the options also keep XLA CPU from splitting loops across
        threads (see the module docstring).

    Raises:
      ValueError: if ``SMCJAX_CPU_VECTOR_WIDTH`` is set to anything but 128, 256, 512 or xla,
        or ``SMCJAX_CPU_SERIAL_WORK`` to anything but a non-negative integer.

    Example:
      >>> compiler_options()  # with SMCJAX_CPU_VECTOR_WIDTH unset
      {'xla_cpu_prefer_vector_width': 512}
      >>> compiler_options(step_work=10**5)["xla_disable_hlo_passes"]
      'cpu-parallel-task-assigner'
    """
    value = os.environ.get(_ENV, "512").strip().lower()
    if value not in (*_WIDTHS, "xla"):
        raise ValueError(f"{_ENV} must be one of {', '.join(_WIDTHS)} or 'xla', got {value!r}")
    options = {} if value == "xla" else {"xla_cpu_prefer_vector_width": int(value)}
    if _serial(step_work, serial_work_bound()):
        options["xla_disable_hlo_passes"] = _disabled_passes()
    return options


def _serial(step_work: float | None, bound: int) -> bool:
    return step_work is not None and bound > 0 and step_work <= bound


# Read once, at import; a bad value fails the import clearly.
_OPTIONS = compiler_options()
_SERIAL_BOUND = serial_work_bound()
_SERIAL_OPTIONS = compiler_options(step_work=0) if _SERIAL_BOUND > 0 else _OPTIONS


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
        self._serial = jax.jit(fun, compiler_options=dict(_SERIAL_OPTIONS), **kwargs) \
            if _SERIAL_OPTIONS != _OPTIONS else self._tuned

    def __call__(self, *args, **kwargs):
        return self._call(self._tuned, args, kwargs)

    def sized(self, step_work: float | None):
        """The function for steps of ``step_work`` XLA cost units (None: unknown): compiled
        without XLA's loop splitting across threads when that is at most
        :func:`serial_work_bound` (see the module docstring)."""
        tuned = self._serial if _serial(step_work, _SERIAL_BOUND) else self._tuned
        return lambda *args, **kwargs: self._call(tuned, args, kwargs)

    def _call(self, tuned, args, kwargs):
        # The options are CPU options: on a GPU or TPU default backend the plain jit runs.
        if tuned is self._plain or jax.default_backend() != "cpu" \
                or self._under_transformation(args, kwargs):
            return self._plain(*args, **kwargs)
        try:
            return tuned(*args, **kwargs)
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
