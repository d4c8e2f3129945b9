"""``smolmix eval --probe needle``: the needle-in-a-haystack probe as an eval run.

Writes ``needle.json`` (accuracy per length × depth, every sample), ``needle.png`` (the
heatmap) and ``manifest.json`` into ``<out>.partial/``, renamed at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from smolmix.errors import SmolmixError

DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def default_lengths(max_positions: int, shortest: int) -> list[int]:
    """Powers of two from ``shortest`` up to half the model's context, then three quarters
    of it (room is left for the answer)."""
    lengths, n = [], 16
    while n <= max_positions // 2:
        if n >= shortest:
            lengths.append(n)
        n *= 2
    return sorted({*lengths, max(shortest, max_positions * 3 // 4)})


def run_needle(model_path: str, out: Path, lengths: Sequence[int] | None,
               depths: Sequence[float] | None, trials: int = 5, seed: int = 0,
               batch_size: int = 8, tags: Mapping[str, str] | None = None,
               quiet: bool = False) -> str:
    """Run the probe on a checkpoint; return the accuracy grid as text."""
    from smolmix.evaluate.needle import needle_probe, shortest_length, write_heatmap
    from smolmix.models import load_checkpoint
    from smolmix.rundir import atomic_output, check_output_dir, write_manifest
    from smolmix.train_run import check_model_path

    if trials <= 0:
        raise SmolmixError(f"must be positive, got {trials}", "--trials")
    out = Path(out)
    check_output_dir(out, replace=False)
    check_model_path(model_path, "model")
    model, tokenizer = load_checkpoint(Path(model_path))
    lengths = list(lengths or default_lengths(model.config.max_position_embeddings,
                                              shortest_length(tokenizer)))
    depths = list(depths if depths is not None else DEFAULT_DEPTHS)
    result = needle_probe(model, tokenizer, lengths, depths, trials, seed, batch_size=batch_size)
    with atomic_output(out, replace=False) as work:
        (work / "needle.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        write_heatmap(result, work / "needle.png")
        write_manifest(work, "eval", {"model": model_path, "probe": "needle",
                                      "lengths": lengths, "depths": depths, "trials": trials},
                       seed=seed, extra={"model": model_path, "tags": dict(tags or {}),
                                         "probe": "needle", "accuracy": result.accuracy})
    header = "length \\ depth " + " ".join(f"{d:>6.2f}" for d in depths)
    rows = [f"{n:>14} " + " ".join(f"{a:>6.2f}" for a in acc)
            for n, acc in zip(lengths, result.accuracy)]
    return "\n".join([header, *rows])
