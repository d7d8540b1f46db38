"""Theory, in one place, used by the tests, ``check-bounds`` and the figures alike.

* ``order_stats``: E and Var of the k-th fastest of n workers, for every delay law, iid or not;
* ``fastest_k_bounds``: the adaptive paper's Lemma 1 (error against wall-clock time),
  Theorem 1 (bound-optimal switching times) and Example 1;
* ``async_theory``: the slow-and-stale paper's runtime laws (Lemmas 4-6, Theorems 1-2,
  Corollary 1) and error bounds (Lemma 3, Theorems 3-4, the Fig. 7 trade-off);
* ``constants``: L, c, sigma^2 and M_G of a concrete problem.

Everything here is host-side NumPy in float64.
"""
