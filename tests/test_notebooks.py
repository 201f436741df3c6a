"""Both notebooks run top to bottom in demo mode, with a small world, and fail on any error.

The kernel is this interpreter (a kernelspec written to a temporary folder), so the test does not depend
on which `python` is first on PATH or on a kernel registered with `ipykernel install`.
"""

import re
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# Cells put after each notebook's "parameters" cell (papermill's convention), and checks run at the end.
SMALL_WORLD = {
    "quickstart.ipynb": (
        "N_OBJECTS = 120\nN_TRAIN, N_TEST = 12_000, 3_000\nLAMBDAS = (1e-2, 1e-3)\nFOLDS = 2\nBOOTSTRAP = 100",
        "assert fit.summary['test_accuracy'] > zero_shot.accuracy + 0.1\n"
        "assert rows[0]['spearman_transformed'] > rows[0]['spearman']\n"
        "assert set(run.results) >= {'world', 'zero_shot', 'probe', 'transfer', 'concepts', 'report'}\n"
        "assert per_concept['transformed'].mean() > per_concept['zero-shot'].mean()",
    ),
    "colab_tpu.ipynb": (
        "THINGS_ROOT = 'no_things_here'\nDEMO_OBJECTS, DEMO_TRAIN, DEMO_TEST = 120, 12_000, 3_000\n"
        "DEMO_IMAGES = False\nLAMBDAS = (1e-2, 1e-3)\nFOLDS = 2",
        "assert USE_DEMO and not IN_COLAB\n"
        "assert ctx.results['probe']['test_accuracy'] > ctx.results['zero_shot']['test_accuracy']\n"
        "assert {'accuracy', 'rsa', 'concepts'} <= set(ctx.results['report']['plots'])",
    ),
}


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(folder / "alignment_jax_test")
    return folder


def test_quickstart_uses_only_the_top_level_api():
    """The quickstart imports alignment_jax once, as aj, and reaches nothing below it."""
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    imports = [line for line in source.splitlines() if "alignment_jax" in line]
    assert imports == ["import alignment_jax as aj"], imports
    import alignment_jax

    used = set(re.findall(r"\baj\.(\w+)", source))
    assert used and used <= set(alignment_jax.__all__), used - set(alignment_jax.__all__)


@pytest.mark.parametrize("name", sorted(SMALL_WORLD))
def test_notebook_runs_in_demo_mode(name, kernel_dir, tmp_path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    position = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", ())]
    assert len(position) == 1, f"{name}: one cell tagged 'parameters'"
    settings, checks = SMALL_WORLD[name]
    nb.cells.insert(position[0] + 1, nbformat.v4.new_code_cell(settings))
    nb.cells.append(nbformat.v4.new_code_cell(checks))

    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    km = KernelManager(kernel_name="alignment_jax_test", kernel_spec_manager=specs)
    assert km.kernel_spec.argv[0] == sys.executable
    client = NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error

    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 3, f"{name}: {images} figures shown"
