"""Checks an installed mtl_keras (from the wheel, not the checkout), as a user would meet it.

Run by ``.ci/wheel_check.sh`` with the fresh virtual environment's Python, from a
folder outside the checkout, once per Keras (``TF_USE_LEGACY_KERAS`` unset, then
``=1``)::

    python check_installed.py --wheel DIST/mtl_keras-*.whl --sdist DIST/mtl_keras-*.tar.gz \\
        --source CHECKOUT/mtl_keras --out TMPDIR [--demo]

It fails (exit 1, every problem listed) when a module of the source tree is
missing from the sdist or the wheel, when mtl_keras is imported from the
checkout instead of the installed copy, when a module does not import, when
the three version numbers differ, or when ``mtl-keras demo --quick`` fails.
This file is not collected by pytest (it tests an installation, not the code).
"""

import argparse
import importlib
import importlib.metadata
import os
import pkgutil
import subprocess
import sys
import tarfile
import traceback
import zipfile


def source_modules(source):  # also run as a script by wheel_check.sh, before the build
    """Paths like ``mtl_keras/training/step.py`` of every module under ``source``."""
    root = os.path.dirname(os.path.abspath(source))
    found = set()
    for folder, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.update(os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
                     for f in files if f.endswith(".py"))
    return found


def archive_members(path):
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as archive:
            return set(archive.namelist())
    with tarfile.open(path) as archive:
        # an sdist's members sit under its "name-version/" folder
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def check_files(args, problems):
    if args.source_list:  # the modules as they were when the sdist was built
        with open(args.source_list) as handle:
            expected = set(handle.read().split())
    else:
        expected = source_modules(args.source)
    for archive in (args.sdist, args.wheel):
        missing = sorted(expected - archive_members(archive))
        if missing:
            problems.append(f"{os.path.basename(archive)} lacks {len(missing)} module(s) of the source tree "
                            f"(a folder without __init__.py?): {', '.join(missing)}")
    return len(expected)


def check_imports(source, problems):
    try:
        import mtl_keras
    except Exception:  # noqa: BLE001 - reported with the rest
        problems.append(f"import mtl_keras: {traceback.format_exc()}")
        return 0, 1
    here = os.path.abspath(mtl_keras.__file__)
    if here.startswith(os.path.abspath(source) + os.sep) or "site-packages" not in here:
        problems.append(f"mtl_keras imported from {here}, not from the installed wheel")
    names = ["mtl_keras"] + [info.name for info in pkgutil.walk_packages(
        mtl_keras.__path__, "mtl_keras.", onerror=lambda name: None)]
    imported = 0
    for name in names:
        legacy_only = name == "mtl_keras.tfrs" or name.startswith("mtl_keras.tfrs.")
        try:
            importlib.import_module(name)
            imported += 1
        except ImportError as error:
            # mtl_keras.tfrs refuses Keras 3 by design (TFRS 0.7.7 needs tf_keras); anything else fails
            if legacy_only and mtl_keras.IS_KERAS3 and "needs tf_keras" in str(error):
                continue
            problems.append(f"import {name}: {traceback.format_exc(limit=2)}")
        except Exception:  # noqa: BLE001 - every failure is reported, not only ImportError
            problems.append(f"import {name}: {traceback.format_exc(limit=2)}")
    if not mtl_keras.IS_KERAS3 and "mtl_keras.tfrs.mixin" not in sys.modules:
        problems.append("mtl_keras.tfrs.mixin was not imported under tf_keras")
    return imported, len(names)


def check_version(problems):
    mtl_keras = sys.modules.get("mtl_keras")
    if mtl_keras is None:
        return "(mtl_keras did not import)"

    command = os.path.join(os.path.dirname(sys.executable), "mtl-keras")
    done = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=300)
    said = done.stdout.strip()
    versions = {"mtl_keras.__version__": mtl_keras.__version__,
                "package metadata": importlib.metadata.version("mtl_keras"),
                "mtl-keras --version": said.split()[-1] if said else f"(exit {done.returncode}) {done.stderr[-300:]}"}
    if len(set(versions.values())) != 1:
        problems.append(f"version numbers differ: {versions}")
    return mtl_keras.__version__


def check_demo(out, problems):
    command = os.path.join(os.path.dirname(sys.executable), "mtl-keras")
    done = subprocess.run([command, "demo", "--quick", "--out", out], capture_output=True, text=True, timeout=900)
    if done.returncode:
        problems.append(f"mtl-keras demo --quick exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", required=True)
    parser.add_argument("--sdist", required=True)
    parser.add_argument("--source", required=True, help="the checkout's mtl_keras folder")
    parser.add_argument("--source-list", help="a file of the module paths listed at build time (default: --source now)")
    parser.add_argument("--out", required=True, help="a scratch folder for the demo")
    parser.add_argument("--demo", action="store_true", help="also run `mtl-keras demo --quick`")
    args = parser.parse_args()
    keras_name = "tf_keras" if os.environ.get("TF_USE_LEGACY_KERAS") == "1" else "Keras 3"
    problems = []
    modules = check_files(args, problems)
    imported, listed = check_imports(args.source, problems)
    version = check_version(problems)
    demo = args.demo and not problems
    if demo:
        check_demo(args.out, problems)
    for problem in problems:
        print(f"FAIL ({keras_name}): {problem}", file=sys.stderr)
    print(f"{keras_name}: {modules} source modules in the sdist and wheel, {imported} of {listed} modules imported, "
          f"version {version}" + (", demo --quick" if demo else "") + (" FAILED" if problems else " ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
