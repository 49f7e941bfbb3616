"""Symbolic derivations (sympy; numba and scipy only imported on request, e.g. by
``codegen.to_numba`` or the numeric quadrature fallback of ``gaussian``; the only I/O is the
result cache of ``gaussian`` and ``hinge`` under the user cache directory, :mod:`analytic.cache`).

Conventions: ``g ~ N(0, 1)``; two-layer network ``f(x) = v . phi(W x / sqrt(d)) / sqrt(m)``
with standard Gaussian ``W, v`` at initialisation for the kernel results; the mean-field network
``f(x) = (alpha/M) sum_i a_i sigma(w_i . x / sqrt(d))`` for the hinge-loss theory.
"""
