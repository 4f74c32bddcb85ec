"""Trace-time checks of user functions and inputs (clear ``ValueError`` instead of XLA errors)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def describe(tree) -> str:
    """Short text of a pytree of shapes/dtypes, for error messages."""
    leaves, treedef = jax.tree.flatten(tree)
    parts = [f"{jnp.dtype(leaf.dtype).name}{list(leaf.shape)}" for leaf in leaves]
    return f"{treedef} with leaves {parts}"


def shape_struct(fn, *args, what: str):
    """``jax.eval_shape`` that turns any exception into a ValueError naming ``what``."""
    try:
        return jax.eval_shape(fn, *args)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 -- re-raised with context
        raise ValueError(f"{what} failed when traced on one particle: {err}") from err


def same_structure(expected, got, *, what: str) -> None:
    """Require ``got`` to have the tree structure, shapes and dtypes of ``expected``."""
    e_leaves, e_def = jax.tree.flatten(expected)
    g_leaves, g_def = jax.tree.flatten(got)
    if e_def != g_def or any(
        a.shape != b.shape or jnp.dtype(a.dtype) != jnp.dtype(b.dtype)
        for a, b in zip(e_leaves, g_leaves, strict=True)
    ):
        raise ValueError(
            f"{what} must return one particle shaped like the initial state "
            f"({describe(expected)}), got {describe(got)}"
        )


def scalar(struct, *, what: str) -> None:
    """Require a scalar floating (or integer) output."""
    leaves = jax.tree.leaves(struct)
    if len(leaves) != 1 or leaves[0].shape != ():
        raise ValueError(
            f"{what} must return a scalar log density for one particle, got {describe(struct)}"
        )


def leading_axis(tree, *, what: str) -> int:
    """The common leading-axis length of every leaf of ``tree``."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{what} is empty")
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in leaves}
    if None in sizes:
        raise ValueError(f"every leaf of {what} needs a leading time axis; got a scalar leaf")
    if len(sizes) != 1:
        raise ValueError(f"the leaves of {what} disagree on the leading (time) axis: {sorted(sizes)}")
    return sizes.pop()
