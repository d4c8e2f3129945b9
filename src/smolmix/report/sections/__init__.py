"""The sections of each kind of run smolmix writes; importing this package registers them."""

from smolmix.report.sections import diagnosis, evaluation, gap, loop, mixture, train  # noqa: F401
