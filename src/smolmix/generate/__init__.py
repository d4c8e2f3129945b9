"""``smolmix generate``: teacher traces for problems, verified against reference answers.

Layers, bottom up: :mod:`problems` and :mod:`styles` (inputs), :mod:`endpoint` (an
OpenAI-compatible server over async HTTP, with retries) and :mod:`local` (a checkpoint run in
this process), :mod:`verify` (rejection sampling with the smolmix grader), :mod:`journal`
(resumable progress), :mod:`run` (the command), :mod:`pair` (two outputs on the problems both
solved).
"""
