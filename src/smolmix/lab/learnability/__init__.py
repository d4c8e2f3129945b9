"""The learnability-gap lab (Li et al. 2025, arXiv 2502.12143): verifiable reasoning tasks
(:mod:`.problems`) and correct traces in four styles, short/long CoT and large/small teacher
(:mod:`.traces`), that differ in one factor at a time. The design record is
``docs/lab-learnability-gap-design.md``.
"""
