"""The ```python blocks of README.md and docs/*.md run, so a renamed argument breaks the build.

How they run (also in docs/README.md):
- The blocks of one page run in order in one namespace, as a reader following the page
  would, in a scratch folder (files they write land there).
- In a reduced form, by one rule (``reduce``): ``epochs=N`` becomes ``epochs=1`` and the row
  count of ``synthetic_tasks(N`` / ``synthetic_recsys(N`` becomes ``ROWS``. Nothing else
  is rewritten.
- A block that cannot run here (a cluster, a server in another shell) is preceded by
  ``<!-- docs-test: skip: <why> -->``; the reason is required. docs/api.md is left out: it
  is generated from the docstrings, whose examples run in tests/test_doctests.py.
"""

import pathlib
import re

import pytest

from mtl_keras.backend import IS_KERAS3, keras

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "api.md")
ROWS = 400
BLOCK = re.compile(r"(?:<!-- docs-test: (?P<marker>[^\n]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


def blocks(page):
    """[(line, code, skip reason or None)] of a page's python blocks."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        marker = match.group("marker")
        reason = None
        if marker is not None:
            assert marker.startswith("skip: ") and marker[6:].strip(), f"{page.name}: a skip marker needs its reason"
            reason = marker[6:].strip()
        found.append((text[:match.start("code")].count("\n") + 1, match.group("code"), reason))
    return found


def reduce(code):
    code = re.sub(r"\bepochs=\d+", "epochs=1", code)
    return re.sub(r"\b(synthetic_tasks|synthetic_recsys)\(\s*[\d_]+", rf"\1({ROWS}", code)


def test_reduce_changes_only_sizes():
    assert reduce("fit(x, epochs=20)\nsynthetic_recsys(100_000, seed=0)\nsynthetic_tasks(40000, correlation=0.5)") == (
        f"fit(x, epochs=1)\nsynthetic_recsys({ROWS}, seed=0)\nsynthetic_tasks({ROWS}, correlation=0.5)")


def test_every_page_has_blocks_that_run():
    runnable = sum(1 for page in PAGES for _, _, reason in blocks(page) if reason is None)
    assert runnable >= 8


def check_models_config(guide, exported):
    """serving/models.config serves what the guide's blocks export, and the guide names its labels."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((ROOT / "serving" / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    for model in config.model_config_list.config:
        policy = model.model_version_policy
        on_disk = sorted(int(v.name) for v in (exported / model.name).iterdir() if v.name.isdigit())
        if policy.HasField("specific"):
            wanted = sorted(policy.specific.versions)
        else:
            wanted = list(range(1, policy.latest.num_versions + 1))
        assert on_disk == wanted, f"{model.name}: the guide exports {on_disk}, models.config serves {wanted}"
        assert f"`{model.name}`" in guide, f"serve_production.md does not explain model {model.name!r}"
        for label, version in model.version_labels.items():
            assert version in on_disk and f"`{label}` (version {version})" in guide, (model.name, label)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    try:
        for line, code, reason in blocks(page):
            if reason is not None:
                compile(code, f"{page.name}:{line}", "exec")  # still valid Python
                continue
            if "tensorflow_recommenders" in code and IS_KERAS3:
                continue  # TFRS imports only under tf_keras: the tf_keras pass runs it
            exec(compile(reduce(code), f"{page.name}:{line}", "exec"), namespace)
        if page.name == "serve_production.md":
            check_models_config(page.read_text(), tmp_path / "serving" / "models")
    finally:
        keras.mixed_precision.set_global_policy("float32")
        server = namespace.get("server")
        if hasattr(server, "stop"):
            server.stop(grace=0)


def test_build_md_states_each_builders_defaults():
    """Every builder has a row in docs/build.md's heads table; each `name=value` there (and in the
    paragraph on what every builder takes) is a parameter of the builder with that default."""
    import ast
    import inspect

    from mtl_keras import models

    text = (ROOT / "docs" / "build.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", text, re.M))
    every = text[text.index("Every builder also takes"):].split("\n\n")[0]
    builders = [name for name in models.__all__ if inspect.isfunction(getattr(models, name))
                and next(iter(inspect.signature(getattr(models, name)).parameters)) == "inputs"]
    assert sorted(rows) == sorted(builders)
    for name in builders:
        parameters = inspect.signature(getattr(models, name)).parameters
        for argument, value in re.findall(r"`(\w+)=([^`]+)`", rows[name] + every):
            assert argument in parameters, f"build.md gives {name} `{argument}`, which it does not take"
            assert parameters[argument].default == ast.literal_eval(value), (name, argument)
        for absent in re.findall(r"no `(\w+)`", rows[name]):
            assert absent not in parameters, (name, absent)
        if "no tower" in rows[name]:
            assert "tower_units" not in parameters, name
    for call in re.findall(r"^\| `(\w+\(inputs.*?\))` \|", text, re.M):  # the architecture table
        node = ast.parse(call, mode="eval").body
        parameters = inspect.signature(getattr(models, node.func.id)).parameters
        for keyword in node.keywords:
            assert parameters[keyword.arg].default == ast.literal_eval(keyword.value), call


def test_make_bench_runs_every_benchmark():
    """docs/benchmarks.md says `make bench` runs every benchmarks/*.py: the Makefile's bench targets do."""
    makefile = (ROOT / "Makefile").read_text()
    recipes = re.findall(r"^(bench-\w+|bench):.*\n((?:\t.*\n)*)", makefile, re.M)
    run = set(re.findall(r"benchmarks/(\w+\.py)", "".join(body for _, body in recipes)))
    assert run == {path.name for path in (ROOT / "benchmarks").glob("*.py")}
    targets = {target for line in re.findall(r"^bench: (.*)$", makefile, re.M) for target in line.split()}
    assert targets == {name for name, _ in recipes if name != "bench"}
