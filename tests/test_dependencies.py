"""setup.py against the package's imports: every requirement is imported, every import is declared, and what
a module imports at load time is a requirement (an extra's package is imported only where it is used)."""

import ast
import importlib.metadata
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# distribution -> the module it installs, where the names differ beyond case and "-" vs "_"
IMPORT_NAMES = {
    "pillow": "PIL",
    "absl-py": "absl",
    "orbax-checkpoint": "orbax",
    "ml-collections": "ml_collections",
    "tensorflow-cpu": "tensorflow",
    "open_clip_torch": "open_clip",
}


def declared() -> tuple[set[str], set[str]]:
    """(import names of install_requires, import names of every extra) from setup.py's setup(...) call."""
    call = next(
        node
        for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    )
    wanted = ("install_requires", "extras_require")
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in wanted}
    required = {import_name(r) for r in kwargs["install_requires"]}
    extras = {import_name(r) for reqs in kwargs["extras_require"].values() for r in reqs}
    return required, extras


def import_name(requirement: str) -> str:
    dist = re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0]
    return IMPORT_NAMES.get(dist, dist.lower().replace("-", "_"))


def package_imports() -> tuple[set[str], set[str]]:
    """(third-party modules imported anywhere in alignment_jax/, those imported at module level)."""
    anywhere, at_load = set(), set()
    for path in (ROOT / "alignment_jax").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"alignment_jax"}:
                anywhere.add(name)
                if id(node) in top:
                    at_load.add(name)
    return anywhere, at_load


def test_requirements_match_the_imports():
    required, extras = declared()
    anywhere, at_load = package_imports()
    assert required <= anywhere, f"required but never imported by the package: {sorted(required - anywhere)}"
    assert anywhere <= required | extras, f"imported but not declared: {sorted(anywhere - required - extras)}"
    assert at_load <= required, f"imported when a module loads, but only in an extra: {sorted(at_load - required)}"
    assert "pandas" not in required and "pandas" in extras  # only the notebooks (and their test) use it


def test_the_import_name_table_agrees_with_the_installed_metadata():
    provided = importlib.metadata.packages_distributions()  # module -> distributions that install it
    for dist, module in IMPORT_NAMES.items():
        if module in provided:
            assert dist.lower().replace("_", "-") in {d.lower().replace("_", "-") for d in provided[module]}, dist
