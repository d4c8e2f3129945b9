"""``smolmix loop``: evaluation-driven rebalancing, stage by stage.

Each stage: mix → train (continuing the previous stage) → eval per task → diagnose → a policy
proposes the next stage's shares (:mod:`.policies`), :mod:`.limits` holds them to the
per-stage bound and the repetition caps, and every change is logged with its reason.
"""
