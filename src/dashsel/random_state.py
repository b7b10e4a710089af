"""One place that turns a user's ``random_state`` into numpy generators and derived seeds."""

from __future__ import annotations

import numpy as np

RandomState = int | np.random.Generator | np.random.SeedSequence | None


def check_random_state(random_state: RandomState) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for an int, Generator, SeedSequence or None.

    A Generator is returned as is (shared, as in scikit-learn); an int or SeedSequence gives a
    new, reproducible Generator; None gives fresh OS entropy.
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(random_state)
    raise TypeError(
        f"random_state must be an int, numpy Generator, SeedSequence or None, "
        f"not {type(random_state).__name__}"
    )


def derive_seed(*keys: int) -> int:
    """A 32-bit seed derived from integer keys, stable across processes and platforms.

    Used for per-trial seeds: ``derive_seed(run_seed, trial_number)`` is the same wherever the
    trial runs, so parallel and resumed runs reproduce a sequential one.
    """
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(1)[0])


def step_generator(base_seed: int, step: int) -> np.random.Generator:
    """A generator for one decision step, independent of how many draws earlier steps made.

    Policies draw from ``step_generator(seed, n_asked)``, so their choices depend only on the
    observations told so far and the step number: replaying a journal reproduces them exactly.
    """
    return np.random.default_rng(np.random.SeedSequence([base_seed & 0xFFFFFFFF, step]))
