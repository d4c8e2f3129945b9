"""The bad-input catalogue of the run commands: ``train``, ``eval``, ``diagnose``, ``gap`` and
``lab rare-tasks``.

Each case is a real bad file, folder, setting or flag (damaged copies of real tiny models,
mixtures and runs from the conftest fixtures, made in ``tmp_path``), and each must be a user
error done right (:func:`helpers.clean_error`: exit 2, one ``error:`` line naming the cause,
nothing under ``tmp_path`` created, changed or removed). Nearly every case fails before a model
loads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import clean_error
from safetensors.torch import load_file, save_file

LONG_NAME = "x" * 300  # over the 255 bytes a file name may have


@pytest.fixture(scope="module")
def src(report_runs, tiny_checkpoint, lab_mixture) -> dict[str, Path]:
    """The pristine inputs (outside tmp_path: read, never damaged)."""
    return {"runs": report_runs, "model": tiny_checkpoint, "mixture": lab_mixture}


def _copy(source: Path, tmp: Path, name: str | None = None) -> Path:
    target = tmp / (name or source.name)
    shutil.copytree(source, target)
    return target


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _file(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _check(argv: list, tmp: Path, capfd, expected: str) -> None:
    line = clean_error(argv, tmp, capfd)
    assert expected in line, line


# --- damage to a model folder (train, eval and diagnose each meet every one) -------------------

def _huge_norm(model: Path) -> None:
    """Finite weights whose forward pass overflows: the loss is NaN from the first step."""
    tensors = load_file(model / "model.safetensors")
    tensors["model.norm.weight"] = tensors["model.norm.weight"] * 0 + 3e38
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})


def _unlink(*names):
    return lambda m: [(m / n).unlink() for n in names]


MODEL_DAMAGE = {
    "truncated-safetensors": (lambda m: _truncate(m / "model.safetensors"), "model.safetensors"),
    "garbage-tokenizer": (lambda m: (m / "tokenizer.json").write_text("garbage {"),
                          "tokenizer is corrupt"),
    "corrupt-config-json": (lambda m: (m / "config.json").write_text('{"model_type": "ll'),
                            "config.json"),
    "config-json-not-object": (lambda m: (m / "config.json").write_text("[1, 2]"),
                               "JSON object"),
    "missing-tokenizer": (_unlink("tokenizer.json", "tokenizer_config.json"), "no tokenizer"),
    "missing-weights": (_unlink("model.safetensors"), "no safetensors weights"),
}


def _damaged_model(tmp: Path, src: dict, damage: str) -> Path:
    model = _copy(src["model"], tmp, "model")
    MODEL_DAMAGE[damage][0](model)
    return model


# --- train ----------------------------------------------------------------------------------

def _train(tmp: Path, src: dict, *sets: str, out: Path | None = None, **config) -> list:
    data = {"model": str(src["model"]), "mixture": str(src["mixture"]), "steps": 2,
            "batch_size": 4, "learning_rate": 0.003, **config}
    path = _file(tmp, "train.yaml", yaml.safe_dump(data))
    return ["train", path, "--out", out or tmp / "run", "--quiet",
            *[arg for s in sets for arg in ("--set", s)]]


TRAIN_NUMBERS = [  # issue C: numbers the schema used to take and training could not
    ("learning_rate=.inf", "learning_rate: input should be a finite number"),
    ("learning_rate=.nan", "learning_rate: input should be a finite number"),
    ("learning_rate=-0.001", "learning_rate"),
    ("learning_rate=1000000", "learning_rate: input should be less than or equal to 10"),
    ("warmup_steps=-1", "warmup_steps"),
    ("warmup_steps=100000000000000", "warmup_steps"),
    ("weight_decay=.nan", "weight_decay: input should be a finite number"),
    ("weight_decay=-0.1", "weight_decay"),
    ("max_grad_norm=.inf", "max_grad_norm: input should be a finite number"),
    ("max_grad_norm=0", "max_grad_norm"),
    ("epochs=.inf", "epochs: input should be a finite number"),
    ("epochs=1e30", "epochs"),
    ("steps=0", "steps"),
    ("steps=100000000000000000000", "steps"),
    ("batch_size=0", "batch_size"),
    ("batch_size=100000000", "batch_size"),
    ("grad_accum=-1", "grad_accum"),
    ("max_length=0", "max_length"),
    ("max_length=1000000000000", "max_length"),
    ("lora.r=0", "lora.r"),
    ("lora.alpha=.inf", "lora.alpha: input should be a finite number"),
    ("lora.dropout=1.5", "lora.dropout"),
    ("lora.dropout=.nan", "lora.dropout"),
    ("eval.every=0", "eval.every"),
    ("eval.batch_size=-1", "eval.batch_size"),
    ("eval.generate.max_new_tokens=0", "eval.generate.max_new_tokens"),
    ("logging_steps=1000000000000", "logging_steps"),
    ("save_every=-5", "save_every"),
    ("neftune_noise_alpha=.inf", "neftune_noise_alpha: input should be a finite number"),
    ("lr_scheduler=nope", "not a valid SchedulerType"),
    ("adam_beta1=.nan", "adam_beta1: input should be a finite number"),
    ("seed=-1", "seed"),
    ("seed=1099511627776", "seed: input should be less than or equal to 4294967295"),
]


@pytest.mark.parametrize("setting,expected", TRAIN_NUMBERS, ids=[s for s, _ in TRAIN_NUMBERS])
def test_train_refuses_bad_numbers(setting, expected, tmp_path, src, capfd):
    _check(_train(tmp_path, src, setting), tmp_path, capfd, expected)


@pytest.mark.parametrize("seed", ["-1", "1099511627776"])
def test_train_bad_seed_leaves_no_partial_nor_parent_folders(seed, tmp_path, src, capfd):
    """Issue F: the refused run leaves neither ``out.partial`` nor the parents of ``--out``."""
    out = tmp_path / "a" / "b" / "run"
    _check(_train(tmp_path, src, f"seed={seed}", out=out), tmp_path, capfd, "seed")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("damage", MODEL_DAMAGE)
def test_train_refuses_a_damaged_model(damage, tmp_path, src, capfd):
    model = _damaged_model(tmp_path, src, damage)
    _check(_train(tmp_path, src, f"model={model}"), tmp_path, capfd, MODEL_DAMAGE[damage][1])


def _train_truncated_arrow(tmp, src):
    mixture = _copy(src["mixture"], tmp, "mixture")
    _truncate(next(mixture.glob("*.arrow")))
    return _train(tmp, src, f"mixture={mixture}")


def _train_eval_data(content: bytes):
    def setup(tmp, src):
        return _train(tmp, src, f"eval.data={_file(tmp, 'held.jsonl', content)}")
    return setup


def _train_out_under_file(tmp, src):
    return _train(tmp, src, out=_file(tmp, "notes.txt", "a file") / "run")


def _train_out_is(which: str):
    def setup(tmp, src):
        copy = _copy(src[which], tmp, which)
        return _train(tmp, src, f"{which}={copy}", out=copy)
    return setup


def _train_out_holds_mixture(tmp, src):
    folder = tmp / "work"
    folder.mkdir()
    mixture = _copy(src["mixture"], folder, "mixture")
    return _train(tmp, src, f"mixture={mixture}", out=folder)


def _train_diverges(tmp, src):
    model = _copy(src["model"], tmp, "model")
    _huge_norm(model)
    return _train(tmp, src, f"model={model}", "logging_steps=1")


def _train_plain_folder_mixture(tmp, src):
    (tmp / "plain").mkdir()
    _file(tmp / "plain", "data.jsonl", '{"task": "copy"}\n')
    return _train(tmp, src, f"mixture={tmp / 'plain'}")


TRAIN_FILES = {
    "truncated-arrow-mixture": (_train_truncated_arrow, "mixture is corrupt"),
    "mixture-a-plain-folder": (_train_plain_folder_mixture, "not a mixture folder"),
    "eval-data-latin1": (_train_eval_data(b'{"task": "copy", "prompt": "caf\xe9", '
                                          b'"completion": "1"}\n'), "not UTF-8"),
    "eval-data-truncated": (_train_eval_data(b'{"task": "copy", "prompt": "a", "compl'),
                            "malformed JSON"),
    "eval-data-tags-a-list": (_train_eval_data(b'{"task": "copy", "prompt": "a", '
                                               b'"completion": "b", "tags": [1]}\n'),
                              "held.jsonl:1"),
    "out-under-a-file": (_train_out_under_file, "is a file, not a folder"),
    "out-name-too-long": (lambda tmp, src: _train(tmp, src, out=tmp / LONG_NAME),
                          "output name too long"),
    "out-is-the-model": (_train_out_is("model"), "is an input"),
    "out-is-the-mixture": (_train_out_is("mixture"), "is an input"),
    "out-holds-the-mixture": (_train_out_holds_mixture, "holds an input"),
    "resume-missing-checkpoint": (lambda tmp, src: [*_train(tmp, src), "--resume",
                                                    tmp / "nowhere"], "does not exist"),
    "loss-not-finite": (_train_diverges, "training diverged"),
}


@pytest.mark.parametrize("case", TRAIN_FILES)
def test_train_refuses_bad_files_and_outputs(case, tmp_path, src, capfd):
    setup, expected = TRAIN_FILES[case]
    _check(setup(tmp_path, src), tmp_path, capfd, expected)


# --- eval -----------------------------------------------------------------------------------

def _eval(model: Path, out: Path, *flags) -> list:
    return ["eval", model, "--out", out, "--quiet", *flags]


@pytest.mark.parametrize("damage", MODEL_DAMAGE)
def test_eval_refuses_a_damaged_model(damage, tmp_path, src, capfd):
    model = _damaged_model(tmp_path, src, damage)
    _check(_eval(model, tmp_path / "ev", "--tasks", "lab:copy"), tmp_path, capfd,
           MODEL_DAMAGE[damage][1])


QA = '{"prompt": "copy 1 =", "answer": "1"}\n'


def _task(data_name: str | None, data: str | bytes | None, spec: str = ""):
    """A task file over ``data`` (written as ``data_name``), with extra YAML ``spec``."""
    def setup(tmp, src):
        if data is not None:
            _file(tmp, data_name, data)
        task = _file(tmp, "task.yaml", f"name: qa\npath: {data_name}\n{spec}")
        return _eval(src["model"], tmp / "ev", "--tasks", task)
    return setup


def _task_saved_dataset(damage: str):
    def setup(tmp, src):
        from datasets import Dataset

        Dataset.from_list([json.loads(QA)] * 4).save_to_disk(str(tmp / "saved"))
        if damage == "truncated":
            _truncate(next((tmp / "saved").glob("*.arrow")))
        spec = "split: test\n" if damage == "split" else ""
        if damage == "split":
            shutil.rmtree(tmp / "saved")
            from datasets import DatasetDict

            DatasetDict({"train": Dataset.from_list([json.loads(QA)])}).save_to_disk(
                str(tmp / "saved"))
        return _task("saved", None, spec)(tmp, src)
    return setup


def _task_plain_folder(tmp, src):
    (tmp / "plain").mkdir()
    _file(tmp / "plain", "qa.jsonl", QA)
    return _task("plain", None)(tmp, src)


def _eval_out(where: str):
    def setup(tmp, src):
        if where == "model":
            model = _copy(src["model"], tmp, "model")
            return _eval(model, model, "--tasks", "lab:copy")
        if where == "model-parent":
            (tmp / "work").mkdir()
            model = _copy(src["model"], tmp / "work", "model")
            return _eval(model, tmp / "work", "--tasks", "lab:copy")
        if where == "data":
            task = _task("qa.jsonl", QA)(tmp, src)[-1]
            return _eval(src["model"], tmp / "qa.jsonl", "--tasks", task)
        if where == "mixture":
            mixture = _copy(src["mixture"], tmp, "mixture")
            return _eval(src["model"], mixture, "--tasks", "lab:copy", "--mixture", mixture)
        if where == "under-a-file":
            return _eval(src["model"], _file(tmp, "f.txt", "x") / "ev", "--tasks", "lab:copy")
        return _eval(src["model"], tmp / LONG_NAME, "--tasks", "lab:copy")
    return setup


def _lm_eval_output(content: bytes, out_inside: bool = False):
    def setup(tmp, src):
        folder = tmp / "lm-eval"
        folder.mkdir()
        _file(folder, "samples_copy_2024-01-01T00-00-00.000000.jsonl", content)
        return ["eval", "--from-lm-eval", folder, "--out", folder if out_inside
                else tmp / "ev", "--quiet"]
    return setup


def _trained_model(damage):
    """Eval a damaged copy of a model smolmix trained (it has a prompt-format record)."""
    def setup(tmp, src):
        model = _copy(src["runs"] / "train-natural" / "model", tmp, "model")
        damage(model)
        return _eval(model, tmp / "ev", "--tasks", "lab:copy")
    return setup


def _flags(*flags):
    return lambda tmp, src: _eval(src["model"], tmp / "ev", "--tasks", "lab:copy", *flags)


def _needle(*flags):
    return lambda tmp, src: _eval(src["model"], tmp / "ev", "--probe", "needle", *flags)


EVAL_CASES = {
    # issue G: bad task files
    "template-unbalanced-brace": (_task("qa.jsonl", QA, "prompt_template: 'Q: {prompt'\n"),
                                  "not a valid template"),
    "template-positional-field": (_task("qa.jsonl", QA, "prompt_template: 'Q: {}'\n"),
                                  "positional field"),
    "path-a-plain-folder": (_task_plain_folder, "not a datasets folder"),
    "garbage-csv": (_task("qa.csv", b'prompt,answer\n"copy 1 =,1\n\x00\x01,,,\n'),
                    "corrupt"),
    "csv-latin1": (_task("qa.csv", b"prompt,answer\ncaf\xe9,1\n"), "not UTF-8"),
    "jsonl-latin1": (_task("qa.jsonl", b'{"prompt": "caf\xe9", "answer": "1"}\n'),
                     "not UTF-8 text: byte 0xe9"),
    "jsonl-truncated": (_task("qa.jsonl", QA + '{"prompt": "co'), "qa.jsonl:2"),
    "jsonl-line-not-object": (_task("qa.jsonl", "[1, 2]\n"), "not a JSON object"),
    "parquet-garbage": (_task("qa.parquet", b"PAR1 not really"), "corrupt"),
    "saved-dataset-truncated": (_task_saved_dataset("truncated"), "corrupt"),
    "saved-dataset-unknown-split": (_task_saved_dataset("split"), "no split 'test'"),
    "data-unsupported-suffix": (_task("qa.txt", "hello\n"), "unsupported task data"),
    "task-file-latin1": (lambda tmp, src: _eval(src["model"], tmp / "ev", "--tasks", _file(
        tmp, "task.yaml", b"name: q\xe9a\npath: qa.jsonl\n")), "not UTF-8"),
    "task-file-bad-yaml": (lambda tmp, src: _eval(src["model"], tmp / "ev", "--tasks", _file(
        tmp, "task.yaml", "name: [qa\n")), "invalid YAML"),
    # outputs that are, or hold, an input; unwritable outputs
    "out-is-the-model": (_eval_out("model"), "is an input"),
    "out-holds-the-model": (_eval_out("model-parent"), "holds an input"),
    "out-is-the-task-data": (_eval_out("data"), "is an input"),
    "out-is-the-mixture": (_eval_out("mixture"), "is an input"),
    "out-under-a-file": (_eval_out("under-a-file"), "is a file, not a folder"),
    "out-name-too-long": (_eval_out("long"), "output name too long"),
    # flags
    "seed-negative": (_flags("--seed", "-1"), "--seed"),
    "seed-2^40": (_flags("--seed", "1099511627776"), "--seed"),
    "max-new-tokens-0": (_flags("--max-new-tokens", "0"), "--max-new-tokens"),
    "batch-size-huge": (_flags("--batch-size", "1000000000"), "--batch-size"),
    "device-unknown": (_flags("--device", "tpu"), "--device"),
    "mixture-a-plain-folder": (lambda tmp, src: _flags("--mixture", tmp)(tmp, src),
                               "not a mixture folder"),
    "needle-depth-2": (_needle("--depths", "0,2"), "--depths"),
    "needle-length-0": (_needle("--lengths", "0"), "--lengths"),
    "needle-trials-0": (_needle("--trials", "0"), "--trials"),
    "prompt-format-record-corrupt": (_trained_model(lambda m: _file(m, "smolmix.json", "{bad")),
                                     "smolmix.json:1"),
    "prompt-format-record-unknown": (_trained_model(lambda m: _file(
        m, "smolmix.json", '{"prompt_format": "fancy"}')), "'chat' or 'plain'"),
    "lm-eval-samples-truncated": (_lm_eval_output(b'{"doc_id": 0, "targ'), "malformed JSON"),
    "lm-eval-out-is-its-input": (_lm_eval_output(b"{}\n", out_inside=True), "is an input"),
}


@pytest.mark.parametrize("case", EVAL_CASES)
def test_eval_refuses_bad_inputs(case, tmp_path, src, capfd):
    setup, expected = EVAL_CASES[case]
    _check(setup(tmp_path, src), tmp_path, capfd, expected)


# --- diagnose -------------------------------------------------------------------------------

def _train_run(tmp: Path, src: dict) -> Path:
    """A copy of a real train run, with its mixture beside it (where its config points)."""
    _copy(src["runs"] / "mix-natural", tmp)
    return _copy(src["runs"] / "train-natural", tmp)


def _diagnose(run: Path, *flags) -> list:
    return ["diagnose", run, "--batch-size", "10", "--max-batches", "1", "--retention-steps",
            "1", "--quiet", *flags]


@pytest.mark.parametrize("damage", MODEL_DAMAGE)
def test_diagnose_refuses_a_damaged_model(damage, tmp_path, src, capfd):
    run = _train_run(tmp_path, src)
    MODEL_DAMAGE[damage][0](run / "model")
    _check(_diagnose(run), tmp_path, capfd, MODEL_DAMAGE[damage][1])


def _in_run(damage, *flags):
    """Damage a file of the run (``damage(run)``), then diagnose it."""
    def setup(tmp, src):
        run = _train_run(tmp, src)
        damage(run)
        return _diagnose(run, *flags)
    return setup


def _with_file(flag: str, content: str | bytes | None, name: str = "values.json"):
    """Diagnose an intact run with ``flag`` pointing at a file holding ``content``."""
    def setup(tmp, src):
        path = _file(tmp, name, content) if content is not None else tmp / name
        return _diagnose(_train_run(tmp, src), flag, path)
    return setup


def _diagnose_out(where: str):
    def setup(tmp, src):
        run = _train_run(tmp, src)
        if where == "run":
            return _diagnose(run, "--out", run)
        if where == "isolation":
            iso = _file(tmp, "iso.json", '{"sort": 0.5}')
            return _diagnose(run, "--isolation", iso, "--out", iso)
        if where == "mixture":
            return _diagnose(run, "--out", tmp / "mix-natural")
        return _diagnose(run, "--out", _file(tmp, "f.txt", "x") / "diag")
    return setup


def _set_config(**changes):
    def damage(run):
        config = yaml.safe_load((run / "train_config.yaml").read_text())
        (run / "train_config.yaml").write_text(yaml.safe_dump({**config, **changes}))
    return damage


DIAGNOSE_CASES = {
    # issue H: the run's own files
    "train-config-malformed": (_in_run(lambda r: (r / "train_config.yaml").write_text(
        "model: [../model\nsteps: 8\n")), "train_config.yaml"),
    "train-config-missing": (_in_run(lambda r: (r / "train_config.yaml").unlink()),
                             "not found"),
    "train-config-lr-inf": (_in_run(_set_config(learning_rate=float("inf"))),
                            "learning_rate"),
    "curves-truncated": (_in_run(lambda r: _truncate(r / "curves.jsonl", 0.3)),
                         "curves.jsonl:"),
    "curves-row-without-step": (_in_run(lambda r: (r / "curves.jsonl").write_text(
        '{"task": "copy", "exact_match": 0.5}\n')), "no step"),
    "controls-not-numbers": (_in_run(lambda r: (r / "controls.json").write_text(
        '{"isolation": {"sort": "high"}}')), "between 0 and 1"),
    "manifest-truncated": (_in_run(lambda r: _truncate(r / "manifest.json")),
                           "not a smolmix train run"),
    "prompt-format-record-corrupt": (_in_run(lambda r: _file(r / "model", "smolmix.json",
                                                             '{"prompt_format": ')),
                                     "smolmix.json"),
    "checkpoint-truncated-safetensors": (_in_run(lambda r: _truncate(
        r / "checkpoints" / "checkpoint-4" / "model.safetensors")), "model.safetensors"),
    "optimizer-state-truncated": (_in_run(lambda r: _truncate(
        r / "checkpoints" / "checkpoint-4" / "optimizer.pt")), "optimizer.pt"),
    "probe-steps-zero": (lambda tmp, src: _diagnose(_train_run(tmp, src), "--probe-steps", "0"),
                         "must be positive"),
    "mixture-truncated-arrow": (lambda tmp, src: _in_run(lambda r: _truncate(next(
        (tmp / "mix-natural").glob("*.arrow"))))(tmp, src), "mixture is corrupt"),
    # --isolation / --min-share / --data files
    "isolation-not-numeric": (_with_file("--isolation", '{"sort": "high"}'),
                              "between 0 and 1"),
    "isolation-nan": (_with_file("--isolation", '{"sort": NaN}'), "between 0 and 1"),
    "isolation-above-1": (_with_file("--isolation", '{"sort": 7}'), "between 0 and 1"),
    "isolation-not-an-object": (_with_file("--isolation", "[0.5]"), "JSON object"),
    "isolation-truncated": (_with_file("--isolation", '{"sort": 0.'), "malformed JSON"),
    "isolation-missing": (_with_file("--isolation", None), "not found"),
    "isolation-latin1": (_with_file("--isolation", b'{"caf\xe9": 0.5}'), "not UTF-8"),
    "min-share-not-numeric": (_with_file("--min-share", '{"sort": "small"}'),
                              "between 0 and 1"),
    "min-share-not-an-object": (_with_file("--min-share", '"0.1"'), "JSON object"),
    "data-latin1": (_with_file("--data", b'{"task": "sort", "prompt": "\xff"}\n',
                               "held.jsonl"), "not UTF-8"),
    "data-missing": (_with_file("--data", None, "held.jsonl"), "does not exist"),
    # outputs
    "out-is-the-run": (_diagnose_out("run"), "is an input"),
    "out-is-the-isolation-file": (_diagnose_out("isolation"), "is an input"),
    "out-is-the-mixture": (_diagnose_out("mixture"), "is an input"),
    "out-under-a-file": (_diagnose_out("under-a-file"), "is a file, not a folder"),
}


@pytest.mark.parametrize("case", DIAGNOSE_CASES)
def test_diagnose_refuses_bad_inputs(case, tmp_path, src, capfd):
    setup, expected = DIAGNOSE_CASES[case]
    _check(setup(tmp_path, src), tmp_path, capfd, expected)


# --- gap ------------------------------------------------------------------------------------

def _gap_damaged(damage):
    """gap over a damaged copy of one eval run and the other, intact one."""
    def setup(tmp, src):
        run = _copy(src["runs"] / "eval-natural", tmp)
        damage(run)
        return ["gap", run, src["runs"] / "eval-boosted"]
    return setup


def _samples(text: str | bytes):
    return lambda run: _file(run, "samples.jsonl", text)


def _tags_as_list(run: Path) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["tags"] = ["student=s", "cot=long"]
    (run / "manifest.json").write_text(json.dumps(manifest))


def _gap_out(which: str):
    """gap into ``--out`` = a copy of the ``which`` run folder (or a file's child)."""
    def setup(tmp, src):
        runs = [src["runs"] / "eval-natural", src["runs"] / "eval-boosted"]
        if which == "under-a-file":
            out = _file(tmp, "f.txt", "x") / "gap"
        elif which == "eval-natural":
            runs[0] = out = _copy(runs[0], tmp)
        else:
            out = _copy(src["runs"] / which, tmp)
        return ["gap", *runs, "--out", out]
    return setup


GAP_CASES = {
    # issue H
    "samples-missing": (_gap_damaged(lambda r: (r / "samples.jsonl").unlink()),
                        "no samples.jsonl"),
    "samples-truncated": (_gap_damaged(lambda r: _truncate(r / "samples.jsonl", 0.3)),
                          "malformed JSON"),
    "tags-a-list": (_gap_damaged(_tags_as_list), "'tags' must be an object"),
    "samples-latin1": (_gap_damaged(_samples(b'{"task": "caf\xe9", "index": 0, '
                                             b'"correct": true}\n')), "not UTF-8"),
    "sample-without-index": (_gap_damaged(_samples('{"task": "copy", "correct": true}\n')),
                             "integer 'index'"),
    "sample-verdict-not-a-number": (_gap_damaged(_samples(
        '{"task": "copy", "index": 0, "correct": "yes"}\n')), "verdict"),
    "sample-not-an-object": (_gap_damaged(_samples("[1]\n")), "not a JSON object"),
    "sample-twice": (_gap_damaged(_samples('{"task": "copy", "index": 0, "correct": true}\n'
                                           * 2)), "appears twice"),
    "samples-empty": (_gap_damaged(_samples("")), "no samples"),
    "manifest-truncated": (_gap_damaged(lambda r: _truncate(r / "manifest.json")),
                           "not an eval run"),
    # destructive outputs: another kind of run, or an input
    "out-a-train-run": (_gap_out("train-natural"), "is a train folder"),
    "out-a-mixture": (_gap_out("mix-natural"), "is a mixture folder"),
    "out-an-input-run": (_gap_out("eval-natural"), "is an input"),
    "out-under-a-file": (_gap_out("under-a-file"), "is a file, not a folder"),
}


@pytest.mark.parametrize("case", GAP_CASES)
def test_gap_refuses_bad_inputs(case, tmp_path, src, capfd):
    setup, expected = GAP_CASES[case]
    _check(setup(tmp_path, src), tmp_path, capfd, expected)


def test_gap_over_an_existing_train_run_leaves_it_loadable(tmp_path, src, capfd):
    """The example of the issue: ``gap … --out <train run>`` used to delete its model."""
    run = _copy(src["runs"] / "train-natural", tmp_path)
    _check(["gap", src["runs"] / "eval-natural", src["runs"] / "eval-boosted", "--out", run],
           tmp_path, capfd, "only a gap folder may be replaced")
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(run / "model")


# --- lab rare-tasks -------------------------------------------------------------------------

def _lab(*flags, out=None):
    def setup(tmp, src):
        return ["lab", "rare-tasks", "--preset", "smoke", "--out", out(tmp, src) if out
                else tmp / "lab", "--quiet", *flags]
    return setup


LAB_CASES = {
    "steps-0": (_lab("--steps", "0"), "--steps"),
    "steps-negative": (_lab("--steps", "-1"), "--steps"),
    "steps-absurd": (_lab("--steps", "1000000000000"), "--steps"),
    "jobs-0": (_lab("--jobs", "0"), "--jobs"),
    "seeds-negative": (_lab("--seeds", "-1"), "--seeds"),
    "seeds-2^40": (_lab("--seeds", "1099511627776"), "--seeds"),
    "sizes-unknown": (_lab("--sizes", "xs,giant"), "'giant'"),
    "sizes-twice": (_lab("--sizes", "xs,xs"), "--sizes"),
    "tasks-unknown": (_lab("--tasks", "copy,sort,rotate,reverse,count,dedup,juggle"),
                      "'juggle'"),
    "tasks-too-few": (_lab("--tasks", "copy,sort"), "--tasks"),
    "preset-unknown": (lambda tmp, src: ["lab", "rare-tasks", "--preset", "huge", "--out",
                                         tmp / "lab", "--quiet"], "'huge'"),
    "out-a-train-run": (_lab(out=lambda tmp, src: _copy(src["runs"] / "train-natural", tmp)),
                        "is a train folder"),
    "out-a-mixture": (_lab(out=lambda tmp, src: _copy(src["mixture"], tmp)),
                      "is a mixture folder"),
    "out-under-a-file": (_lab(out=lambda tmp, src: _file(tmp, "f.txt", "x") / "lab"),
                         "is a file, not a folder"),
    "out-name-too-long": (_lab(out=lambda tmp, src: tmp / LONG_NAME), "output name too long"),
}


@pytest.mark.parametrize("case", LAB_CASES)
def test_lab_refuses_bad_flags_and_outputs(case, tmp_path, src, capfd):
    setup, expected = LAB_CASES[case]
    _check(setup(tmp_path, src), tmp_path, capfd, expected)
