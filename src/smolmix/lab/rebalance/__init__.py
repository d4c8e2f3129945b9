"""The rebalance lab: every ``smolmix loop`` policy on the rare-task lab's tasks and ladder."""
