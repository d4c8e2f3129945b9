"""The sections of each kind of run smolmix writes; importing this package registers them."""

from smolmix.report.sections import diagnosis, evaluation, gap, mixture, train  # noqa: F401
