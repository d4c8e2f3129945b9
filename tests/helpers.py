"""Small helpers shared by the test modules (imported as ``helpers``: pytest puts this folder
on the import path)."""


def user_model_size():
    """The model size the flow tests were calibrated on (hidden 32, 2 layers, 27.7k
    parameters), fixed here so that they do not move with the lab's ladder."""
    from smolmix.models.ladder import LadderSize

    return LadderSize("test", hidden=32, layers=2, heads=2, intermediate=96)


def one_line_error(capsys) -> str:
    """The command's stderr, which must be one ``error: ...`` line; returns it."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def fit_in_memory(model, tokenizer, records, held_out, run_dir, steps, every, **settings):
    """The Trainer loop of ``smolmix train`` on in-memory records (shuffled, seed 0, no
    checkpoints), scored on ``held_out`` ({task: records}) every ``every`` steps; returns the
    curves."""
    from datasets import Dataset

    from smolmix.train.config import EvalSpec, TrainConfig
    from smolmix.train.curves import TeacherForcedEvaluator
    from smolmix.train.encoding import encode_records
    from smolmix.train.trainer import fit

    config = TrainConfig(model="in-memory", mixture="in-memory", steps=steps, order="shuffle",
                         save_checkpoints=False, eval=EvalSpec(every=every, batch_size=512),
                         **settings)
    evaluator = TeacherForcedEvaluator.from_records(tokenizer, held_out, 512)
    dataset = Dataset.from_dict(encode_records(tokenizer, records))
    return fit(model, tokenizer, dataset, evaluator, config, steps, run_dir)


def listing(root) -> dict:
    """Every path under ``root`` with its size and modification time (a folder's state)."""
    from pathlib import Path

    root = Path(root)
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if not p.is_symlink()}


def clean_error(argv, root, capfd) -> str:
    """Run ``smolmix argv`` in this process and require a user error done right: exit 2, one
    stderr line starting with ``error:``, and nothing under ``root`` created, changed or
    removed. Returns the line."""
    from smolmix.cli import main

    capfd.readouterr()
    before = listing(root)
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse rejects a flag's value before the command runs
        code = exc.code
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert listing(root) == before, "the failed command changed files"
    return err[0]


def sigint_default() -> None:
    """``Popen(preexec_fn=...)`` for a child the test sends SIGINT (Ctrl-C): a shell starts a
    background job with SIGINT ignored, children inherit that, and Python then never raises
    KeyboardInterrupt; give the child the default a terminal's foreground job has."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
