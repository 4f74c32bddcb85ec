"""The ``Example`` sections of the public docstrings run and print what they show."""

import doctest
import importlib
import pkgutil

import pytest

import smcjax

MODULES = sorted(m.name for m in pkgutil.walk_packages(smcjax.__path__, "smcjax."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_examples_exist():
    """A guard on the test above: the main entry points keep runnable examples."""
    finder = doctest.DocTestFinder()
    for name in ("filters", "random", "data_tempering", "diffusion.fkc", "progress"):
        tests = finder.find(importlib.import_module(f"smcjax.{name}"))
        assert sum(len(t.examples) for t in tests) > 0, name
