import subprocess
import sys


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sentiment_pipeline", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_bad_params_exit_non_zero_with_a_message_not_a_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  cv_folds: one\n")
    result = run_cli("train", "--family", "logreg", cwd=tmp_path)
    assert result.returncode == 1
    assert "error:" in result.stderr and "train.cv_folds" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_family_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("{}\n")
    result = run_cli("train", "--family", "svm", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown model family 'svm'" in result.stderr


def test_a_family_the_params_file_does_not_list_is_named_before_any_work(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  families:\n    logreg: {}\n    naive_bayes: {}\n")
    result = run_cli("train", "--family", "random_forest", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "train.families has no 'random_forest' section, so it is not trained" in result.stderr
    assert not (tmp_path / "models").exists()


def test_missing_input_file_leaves_no_output(tmp_path):
    (tmp_path / "params.yaml").write_text("download:\n  source: file\n  path: nowhere.csv\n")
    result = run_cli("download", cwd=tmp_path)
    assert result.returncode == 1
    assert "nowhere.csv: input file not found" in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.csv"))


def _commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_option_help_survives_rich_markup():
    """typer renders help through rich, which takes "[default: x]" for a markup tag and drops it
    (leaving "csv | tsv ... ."): the defaults are written "(default: x)"."""
    import re

    import typer.main
    from rich.text import Text

    from sentiment_pipeline.cli import app

    root = typer.main.get_command(app)
    helps = [(path, param.name, param.help) for path, command in _commands(root)
             for param in command.params if getattr(param, "help", None)]
    assert len(helps) > 30 and any("(default: " in text for _, _, text in helps)
    for path, name, text in helps:
        assert Text.from_markup(text).plain == text, f"{' '.join(path)} --{name}: rich markup eats part of {text!r}"
        assert not re.search(r"\[[a-z]+:", text), (path, name)
