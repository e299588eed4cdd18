"""The package's structure: import-linter's contracts (.importlinter) and private framework names."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint_imports(root):
    return subprocess.run(
        LINT + ["--config", str(root / ".importlinter"), "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(root), "PATH": ""},
    )


def test_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        # The arrow that ran up and down before core/ existed.
        ("weighting/base.py", "import mtl_keras.training.step", "Data flows one way"),
        ("projection/pcgrad.py", "import mtl_keras.weighting.dwa", "Weightings and projections are independent"),
        ("serving/tensors.py", "import mtl_keras.training.labels", "The server imports no training"),
    ],
)
def test_a_wrong_import_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "mtl_keras", tmp_path / "mtl_keras", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = tmp_path / "mtl_keras" / module
    target.write_text(line + "\n" + target.read_text())
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout[-2000:]
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout


PRIVATE = re.compile(
    r"\._flatten_layers|tf\.__internal__|tensorflow\.python|_serialized_attributes"
    r"|_create_all_weights|\bkeras\.src\b|tf_keras\.src|tensorflow\.lite\.python|\._loss\b"
)


def test_private_framework_names_only_in_backend():
    offenders = []
    for path in sorted((ROOT / "mtl_keras").rglob("*.py")):
        if path.name == "backend.py" and path.parent.name == "mtl_keras":
            continue
        for number, text in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(text):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {text.strip()}")
    assert not offenders, "private TensorFlow/Keras/TFRS names outside backend.py:\n" + "\n".join(offenders)
    assert PRIVATE.search((ROOT / "mtl_keras" / "backend.py").read_text())
