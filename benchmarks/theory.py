"""Time of the mean-field theory computations (one run, wall clock, best of 3).

- the one-off sympy derivation (``analytic.hinge``) per data law (cold: ~10 s; warm: read
  from the disk cache);
- ``gamma(t)`` on 10^4 log-spaced times up to ``t = 1e12`` by quadrature and by ODE (aim: well
  under 1 s), and the full ``compute`` (S, X, errors, loss, indicators) on the same grid;
- the population solver (ReLU, so its answer is checked against the closed form here too) for
  two population sizes, times up to ``t = 1000``.

    python benchmarks/theory.py
"""

from __future__ import annotations

import time

import numpy as np

from analytic import hinge
from meanfield import population, theory
from meanfield.config import make_config


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    for law in hinge.DATA_LAWS:
        warm = hinge._cache_file(f"data_law:{law}").exists()
        start = time.perf_counter()
        hinge.numerics(law)
        hinge.latex_equations(law)
        print(f"sympy derivation ({law}): {time.perf_counter() - start:.2f} s (once per "
              f"process; disk cache {'warm' if warm else 'cold'})")
    times = np.concatenate([[0.0], np.geomspace(1e-3, 1e12, 10_000)])
    for law in hinge.DATA_LAWS:
        c = make_config(d=100, data=law)
        t_quad = best_of(lambda c=c: theory.gamma_of_t(c, times, "quad"))
        t_ode = best_of(lambda c=c: theory.gamma_of_t(c, times, "ode"))
        t_all = best_of(lambda c=c: theory.compute(c, times=times))
        gap = np.max(np.abs(theory.gamma_of_t(c, times[1:], "quad")
                            / theory.gamma_of_t(c, times[1:], "ode") - 1))
        print(f"{law}: gamma(t) on 10^4 times to 1e12: quadrature {t_quad * 1e3:.0f} ms, "
              f"ODE {t_ode * 1e3:.0f} ms (max relative gap {gap:.1e}); "
              f"compute() {t_all * 1e3:.0f} ms")
    t_pop = np.concatenate([[0.0], np.geomspace(0.1, 1000.0, 20)])
    c = make_config(d=100)
    ref = theory.compute(c, times=t_pop)
    for n_node, n_z in ((6, 16), (12, 48)):
        start = time.perf_counter()
        pop = population.compute_population(c, t_pop, n_node=n_node, n_rho=1, n_z=n_z)
        elapsed = time.perf_counter() - start
        gap = np.max(np.abs(pop.gamma[1:] / ref.gamma[1:] - 1))
        print(f"population solver, {n_node * n_node} nodes x {n_z} z-points, 21 times to "
              f"t=1000: {elapsed:.2f} s (relu, max relative gap to closed form {gap:.1e})")


if __name__ == "__main__":
    main()
