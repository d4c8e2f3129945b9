"""Labs: synthetic studies that reproduce the findings on a CPU through the same flow.

Importing this package registers the synthetic tasks as ``lab:NAME`` evaluation tasks and the
labs' report sections with :mod:`smolmix.report` (``smolmix report`` on a lab run).
"""

from smolmix.lab import tasks  # noqa: F401  (registers lab:NAME tasks with smolmix.evaluate)
from smolmix.lab.learnability import report as _learnability_report  # noqa: F401  (registers)
from smolmix.lab.rare_tasks import report as _rare_tasks_report  # noqa: F401  (registers)
from smolmix.lab.rebalance import report as _rebalance_report  # noqa: F401  (registers)
