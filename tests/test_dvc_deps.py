"""dvc.yaml's code dependencies, derived instead of trusted: each stage must depend on every
package module its entry point imports (transitively, lazy imports inside functions too) and,
in test_e2e, on every module defining a class pickled in the model files it reads. A module
missing from a stage's deps would let `dvc repro` skip the stage after that module changed and
leave its outputs stale with no warning."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path
from unittest import mock

import joblib
import pytest
import yaml

from .conftest import PROJECT_ROOT

PACKAGE = "sentiment_pipeline"
SOURCE = PROJECT_ROOT / "src"
# Imported by every entry point but computing no output: the package's version line, and the
# command-line wrapper with its opt-in profiler (they choose which stage runs, not what it writes).
NOT_COMPUTING = {f"{PACKAGE}", f"{PACKAGE}.__main__", f"{PACKAGE}.cli", f"{PACKAGE}.core.profiling"}


def module_file(module: str, root: Path = SOURCE) -> Path | None:
    base = root / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(module: str, root: Path = SOURCE) -> set[str]:
    """The package modules ``module`` imports anywhere in its source (module level or inside a
    function), each resolved to a module file: ``from pkg import paths`` is ``pkg.paths``."""
    path = module_file(module, root)
    assert path is not None, module
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: a relative import; the package imports absolutely, "
                                 "so these walks see every edge")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == PACKAGE and module_file(name, root)}
    return found


def closure(modules: set[str], root: Path = SOURCE) -> set[str]:
    """``modules`` and everything they import inside the package, transitively."""
    seen, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += imported_modules(module, root) - seen
            # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            parts = module.split(".")
            todo += [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p not in seen]
    return seen


def as_path(module: str) -> str:
    return module_file(module).relative_to(PROJECT_ROOT).as_posix()


def stages(dvc_yaml: Path = PROJECT_ROOT / "dvc.yaml") -> dict[str, dict]:
    """dvc.yaml's stages with ``${pkg}`` expanded."""
    text = dvc_yaml.read_text(encoding="utf-8")
    pkg = yaml.safe_load(text)["vars"][0]["pkg"]
    return yaml.safe_load(text.replace("${pkg}", pkg))["stages"]


def entry_module(stage: dict) -> str:
    match = re.fullmatch(r"python -m sentiment_pipeline (\w[\w-]*)( .*)?", stage["cmd"])
    assert match, stage["cmd"]
    return f"{PACKAGE}.stages.{match.group(1)}"


def code_deps(stage: dict) -> set[str]:
    return {dep for dep in stage.get("deps", []) if isinstance(dep, str) and dep.endswith(".py")}


def docstring_only(module: str) -> bool:
    """A package's ``__init__`` holding nothing but its docstring computes nothing."""
    path = module_file(module)
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return path.name == "__init__.py" and all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                                               for node in body)


def missing_deps(name: str, stage: dict, extra_modules: set[str] = frozenset()) -> list[str]:
    needed = {m for m in closure({entry_module(stage), *extra_modules}) - NOT_COMPUTING if not docstring_only(m)}
    return sorted({as_path(m) for m in needed} - code_deps(stage))


def pickled_modules(model_file: Path) -> set[str]:
    """The modules of every class and function a joblib/pickle file names, as unpickling finds
    them (joblib's unpickler is the pure-Python one, whose find_class this records)."""
    found: set[str] = set()
    original = pickle._Unpickler.find_class

    def recording(self, module, name):
        found.add(module)
        return original(self, module, name)

    with mock.patch.object(pickle._Unpickler, "find_class", recording):
        joblib.load(model_file)
    return {m for m in found if m.split(".")[0] == PACKAGE}


def model_files(root: Path, stage: dict) -> list[Path]:
    """The model files among a stage's data dependencies (files or directories under models/)."""
    files = []
    for dep in stage.get("deps", []):
        path = root / dep
        if dep.startswith("models/"):
            files += [path] if path.is_file() else sorted(path.rglob("*.joblib"))
    return files


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_stage_depends_on_the_modules_its_entry_point_imports(name):
    stage = stages()[name]
    missing = missing_deps(name, stage)
    assert not missing, f"dvc.yaml stage '{name}' runs {', '.join(missing)} but does not list it in its deps"


def test_every_listed_code_dependency_exists():
    for name, stage in stages().items():
        for dep in code_deps(stage):
            assert (PROJECT_ROOT / dep).is_file(), f"dvc.yaml stage '{name}' lists {dep}, which does not exist"


def test_the_import_walk_sees_lazy_imports_inside_functions():
    # models.py imports the forest's module inside the factory that builds it
    assert f"{PACKAGE}.pipeline.forest" in imported_modules(f"{PACKAGE}.pipeline.models")
    assert f"{PACKAGE}.pipeline.ensemble" in closure({f"{PACKAGE}.stages.ensemble"})


def test_a_missing_module_is_named_with_its_stage():
    stage = {**stages()["evaluate"]}
    stage["deps"] = [dep for dep in stage["deps"] if dep != "src/sentiment_pipeline/pipeline/evaluate.py"]
    assert missing_deps("evaluate", stage) == ["src/sentiment_pipeline/pipeline/evaluate.py"]


def test_the_committed_lock_holds_exactly_the_stages_of_dvc_yaml():
    """DVC keeps a removed stage's entry in dvc.lock; a leftover one would describe outputs no
    stage writes any more."""
    locked = yaml.safe_load((PROJECT_ROOT / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    assert set(locked) == set(stages())
