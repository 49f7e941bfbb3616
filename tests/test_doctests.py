"""The runnable examples in the docstrings of the entry points run and print what they say
(examples that write files are marked ``+SKIP``)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ("meanfield.runtime", "meanfield.simulate", "meanfield.theory",
           "meanfield.files.simulation", "meanfield.files.theory",
           "meanfield.files.comparison", "meanfield.compare", "meanfield.reproduce")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
