"""The manual builds without a warning, its tables are the committed files' content, and the README
stays a front door: short, with the test command CI runs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from benchmarks import common

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250


def _load_script():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_tables = _load_script()


class _AnyTagLoader(yaml.SafeLoader):
    """mkdocs.yml's ``!relative`` and ``!!python/name:`` tags read as plain values."""


_AnyTagLoader.add_multi_constructor("", lambda loader, suffix, node: None)
_AnyTagLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def mkdocs_config() -> dict:
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_AnyTagLoader)


def nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def mkdocs_executable() -> str:
    beside = Path(sys.executable).parent / "mkdocs"
    found = str(beside) if beside.exists() else shutil.which("mkdocs")
    assert found, "mkdocs is not installed (it is a dev dependency: make install)"
    return found


def test_the_manual_builds_in_strict_mode(tmp_path):
    """Broken links or anchors, a page missing from the nav, a missing snippet: each fails the build."""
    result = subprocess.run([mkdocs_executable(), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                             "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    built = (tmp_path / "site" / "evaluation" / "index.html").read_text(encoding="utf-8")
    test = json.loads((ROOT / "metrics/test.json").read_text(encoding="utf-8"))
    assert f"{test['f1_macro']:.4f}" in built  # the generated tables were included


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    config = mkdocs_config()
    docs = ROOT / config.get("docs_dir", "docs")
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md") if "generated" not in p.relative_to(docs).parts}
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice in mkdocs.yml's nav"
    assert pages - set(listed) == set(), "pages missing from mkdocs.yml's nav"
    assert set(listed) - pages == set(), "nav entries without a page"


def test_the_generated_tables_match_the_committed_files():
    assert docs_tables.stale(ROOT) == [], "run `make docs` (python scripts/docs_tables.py) and commit the result"


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"
    text = "\n".join(lines)
    assert "![" in text and "docs/dashboard.png" in text
    assert "```mermaid" in text  # the stage diagram, generated from dvc.yaml
    for page in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / page).exists(), f"README.md links to {page}, which does not exist"


def _setup_commands() -> list[str]:
    """The commands of the README's first code block under "## Set-up", comments removed."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Set-up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README.md's Set-up section has no bash block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


def test_the_readme_gives_the_test_command_ci_runs():
    """`tests/test_workflows.py` checks that ci.yml runs .ci/run; this, that the README's set-up
    test command is exactly the command .ci/run ends with."""
    ci_command = (ROOT / ".ci/run").read_text(encoding="utf-8").rstrip().splitlines()[-1].strip()
    tests = [command for command in _setup_commands() if command.startswith("make test")]
    assert tests == [ci_command], f"README set-up: {tests}, .ci/run: {ci_command!r}"
    assert "make repro" in _setup_commands()


# --- the script on its own inputs ---------------------------------------------------------------

def _project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name in ("dvc.yaml", "params.yaml", "README.md", "plots/confusion_matrix.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    (root / "metrics").mkdir()
    for path in (ROOT / "metrics").glob("*.json"):
        shutil.copy2(path, root / "metrics" / path.name)
    shutil.copytree(ROOT / "metrics/cv", root / "metrics/cv")
    shutil.copytree(ROOT / "docs/generated", root / "docs/generated")
    if (ROOT / "benchmarks/results").is_dir():
        shutil.copytree(ROOT / "benchmarks/results", root / "benchmarks/results")
    return root


def test_check_names_a_stale_file_and_writing_fixes_it(tmp_path, capsys):
    root = _project_copy(tmp_path)
    assert docs_tables.main(["--check", "--root", str(root)]) == 0
    test = json.loads((root / "metrics/test.json").read_text(encoding="utf-8"))
    test["f1_macro"] = 0.5
    (root / "metrics/test.json").write_text(json.dumps(test), encoding="utf-8")
    assert docs_tables.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "docs/generated/test.md" in err and "README.md" in err
    docs_tables.main(["--root", str(root)])
    assert docs_tables.stale(root) == []
    assert "0.5000" in (root / "README.md").read_text(encoding="utf-8")


def _benchmark(params_md5: str | None) -> dict:
    return {"benchmark": "demo", "command": "make bench-serve", "measured_at": "2026-01-02", "machine": "2-core test box",
            "commit": "0123456789abcdef", "params_md5": params_md5,
            "tables": [{"title": "Requests", "columns": ["server", "requests/s", "p99 ms"],
                        "rows": [["ours", 1734.4, 22.61], ["Flask | plain", 32, None]], "note": "same run"}]}


@pytest.mark.parametrize("recorded", ["current", "other", None])
def test_benchmark_sections_say_when_their_params_are_not_todays(tmp_path, recorded):
    root = tmp_path / "project"
    (root / "benchmarks/results").mkdir(parents=True)
    (root / "params.yaml").write_text("train: {seed: 1}\n", encoding="utf-8")
    current = common.params_md5(root / "params.yaml")
    # the digest of the values: a comment or a different layout is the same params
    (root / "params.yaml").write_text("# the seed\ntrain:\n  seed: 1\n", encoding="utf-8")
    md5 = {"current": current, "other": "f" * 32, None: None}[recorded]
    (root / "benchmarks/results/serve.json").write_text(json.dumps(_benchmark(md5)), encoding="utf-8")
    text = docs_tables.benchmark_tables(root)
    assert "### demo" in text and "#### Requests" in text and "`make bench-serve`" in text
    assert "| ours | 1,734 | 22.61 |" in text and "| Flask \\| plain | 32 | – |" in text
    assert "same run" in text and "2026-01-02" in text and "`0123456789ab`" in text
    if recorded == "current":
        assert "Stale" not in text
    else:
        assert '!!! warning "Stale"' in text
        assert ("measured under other params" if recorded == "other" else "params not recorded") in text
        assert "re-run `make bench-serve`" in text


def test_no_benchmark_results_yet_is_a_line_not_an_error(tmp_path):
    assert "No benchmark results" in docs_tables.benchmark_tables(tmp_path)


def test_the_stage_diagram_is_dvc_yamls_graph_without_implied_edges():
    names, edges = docs_tables.stage_edges(yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8")))
    assert ("download", "preprocess") in edges and ("select", "evaluate") in edges
    assert ("preprocess", "evaluate") not in edges  # implied by preprocess -> ... -> evaluate
    assert {stage for edge in edges for stage in edge} == set(names)


def test_the_stream_benchmark_goes_stale_with_its_own_sections_only(tmp_path):
    """stream.json's md5 covers download/preprocess/featurize (common.PARAM_SECTIONS): a new
    training family leaves its table current, a featurize change does not."""
    root = tmp_path / "project"
    (root / "benchmarks/results").mkdir(parents=True)
    params = root / "params.yaml"
    params.write_text("featurize: {max_features: 10}\ntrain: {seed: 1}\n", encoding="utf-8")
    recorded = common.params_md5(params, "stream")
    assert recorded != common.params_md5(params)
    result = {**_benchmark(recorded), "benchmark": "stream", "command": "make bench-stream"}
    (root / "benchmarks/results/stream.json").write_text(json.dumps(result), encoding="utf-8")

    params.write_text("featurize: {max_features: 10}\ntrain: {seed: 2, families: {sgd: {}}}\n", encoding="utf-8")
    assert "Stale" not in docs_tables.benchmark_tables(root)
    for changed in ("featurize: {max_features: 20}\n", "featurize: {max_features: 10}\npreprocess: {seed: 3}\n",
                    "featurize: {max_features: 10}\ndownload: {url: x}\n"):
        params.write_text(changed + "train: {seed: 2}\n", encoding="utf-8")
        text = docs_tables.benchmark_tables(root)
        assert "params.yaml (download, preprocess, featurize) md5" in text and "re-run `make bench-stream`" in text
    # a result recording the whole file's md5 (as before the sections) is stale too
    params.write_text("featurize: {max_features: 10}\ntrain: {seed: 1}\n", encoding="utf-8")
    whole = {**result, "params_md5": common.params_md5(params)}
    (root / "benchmarks/results/stream.json").write_text(json.dumps(whole), encoding="utf-8")
    assert "Stale" in docs_tables.benchmark_tables(root)
