"""Small helpers shared by the test modules (imported as ``helpers``: pytest puts this folder
on the import path)."""


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
