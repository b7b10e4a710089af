"""Use dashsel's engine from the tuning tools a team already runs.

* :class:`dashsel.integrations.optuna.DaSHSampler`: an Optuna sampler that chooses one
  categorical parameter (a dataset id) and leaves every other parameter to an ordinary Optuna
  sampler (``pip install 'dashsel[optuna]'``).
* :class:`dashsel.integrations.ray_tune.DaSHSearcher`: a Ray Tune ``Searcher`` that puts a
  dataset id in each trial's config (``pip install 'dashsel[tune]'``).

Importing this package imports neither library; each submodule imports its own on first use.
"""

from __future__ import annotations

__all__: list[str] = []
