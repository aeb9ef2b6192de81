"""The package's layout: no import circle in latentindigo/, and the runtime never loads the training package."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "latentindigo"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports: every import statement, at module level and inside functions
    alike, except those under `if TYPE_CHECKING:`, which never run."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                visit(ast.Module(body=child.orelse, type_ignores=[]))
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the module's package, one level up per extra dot
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # `from latentindigo import calibration` imports a module, `from latentindigo import UserError` a name
                found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                             for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found & modules - {module_name(path)}


def import_circles() -> list[list[str]]:
    """Every circle of imports among the package's modules, each as the path that closes it."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): sorted(imports(p, modules)) for p in paths}
    circles, done = [], set()

    def walk(module: str, path: list[str]) -> None:
        for target in graph[module]:
            if target in path:
                circles.append(path[path.index(target):] + [target])
            elif target not in done:
                walk(target, path + [target])
        done.add(module)

    for module in graph:
        if module not in done:
            walk(module, [module])
    return circles


def test_no_module_of_the_package_imports_itself_back():
    """Module-level and function-level imports both count (a lazy import still ties the two modules together for
    a reader); imports under `if TYPE_CHECKING:` do not (they never run). A module's own package __init__, which
    Python runs before it, is no edge unless the module imports from it by name."""
    circles = import_circles()
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


RUNTIME = r"""
import json, sys
runtime = json.loads(sys.argv[1])
for name in runtime:
    __import__(name)
import app
app.build_demo(["tiny-random"])
from latentindigo.priors import load_prior
load_prior("tiny-random", calibrate=False)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("latentindigo.training"))))
"""


def test_the_runtime_loads_no_training_module(tmp_path):
    """Every module of the package but the training package's imported, the demo built and a prior loaded: no
    training module is imported (only a calibration reaches them). In a fresh process, which no other test has
    imported training code into."""
    runtime = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if "training" not in p.relative_to(PACKAGE).parts)
    assert "latentindigo.sampler" in runtime and "latentindigo.priors" in runtime
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    run = subprocess.run([sys.executable, "-c", RUNTIME, json.dumps(runtime)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
