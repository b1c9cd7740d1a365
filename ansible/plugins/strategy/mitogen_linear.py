# Mitogen's linear strategy, found through ansible.cfg's strategy_plugins: this file only
# re-exports the class from the pinned `mitogen` package of the project venv, so the config
# does not name a site-packages path (it contains the control node's Python version).
# Measured effect and how to turn it off: docs/benchmarks.md, "Deploy speed".
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
