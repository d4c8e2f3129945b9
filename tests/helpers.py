"""Small helpers shared by the test modules (imported as ``helpers``: pytest puts this folder
on the import path)."""


def one_line_error(capsys) -> str:
    """The command's stderr, which must be one ``error: ...`` line; returns it."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]
