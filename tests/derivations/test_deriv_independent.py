"""chainrule.derivations is the engine's independent witness: it must import nothing but NumPy and the stdlib."""

import ast
import pathlib
import subprocess
import sys

import chainrule.derivations as derivations

PKG = pathlib.Path(derivations.__file__).parent
ALLOWED = {"numpy", "__future__", "typing", "heapq", "json"}


def test_derivations_import_only_numpy_and_the_stdlib():
    for path in sorted(PKG.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:          # relative: only siblings inside chainrule.derivations
                    assert node.level == 1, f"{path.name}: {ast.dump(node)}"
                    continue
                names = [node.module.split(".")[0]]
            else:
                continue
            for name in names:
                assert name in ALLOWED, f"{path.name} imports {name}"


def test_derivations_load_without_the_engine():
    """Load the package from its files under a fresh name, with no chainrule package present at all."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('witness', {str(PKG / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(PKG)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['witness'] = m; spec.loader.exec_module(m)\n"
        "assert not any(k == 'chainrule' or k.startswith('chainrule.') for k in sys.modules), sorted(sys.modules)\n"
        "print(m.window.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "witness.window"
