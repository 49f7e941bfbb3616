"""Symbolic derivations (pure sympy: no numba, no I/O).

Conventions: ``g ~ N(0, 1)``; two-layer network ``f(x) = v . phi(W x / sqrt(d)) / sqrt(m)``
with standard Gaussian ``W, v`` at initialisation for the kernel results; the mean-field network
``f(x) = (alpha/M) sum_i a_i sigma(w_i . x / sqrt(d))`` for the hinge-loss theory.
"""
