"""The documentation: every Python block of README.md and docs/ runs, and the site is complete.

Rules:
- Every fenced block marked ``python`` runs. The blocks of one page run in page order in one
  namespace (a later block may use an earlier block's names), in a temporary folder where
  ``experiments/`` is the repository's (so shipped checkpoints load by their documented path).
- A block right after ``<!-- docs-test: needs-cuda -->`` runs only where CUDA and MuJoCo Warp
  are present; elsewhere it is skipped, and the reason is reported. No other block is skipped.
- Blocks leave no trace: methods they register and Gymnasium ids they register are removed after
  the page.
- The API reference lists every name of ``metarobot.__all__`` and ``metarobot.envs.__all__``.
- Every registered method has its page (in the nav): what it is, its policy type, how it
  adapts, when to use it, and its config as a table generated from the config dataclasses.
- Every key of every config section has a one-line doc (the generated tables show it).
- Imports inside the package flow one way, as the Architecture page says: no cycle, not even
  through an import inside a function.
- The README fits one screen plus a short tour (at most 150 lines), and its relative links
  point at files that exist.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import pytest

import metarobot
import metarobot.envs
from metarobot import registry

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NEEDS_CUDA = "<!-- docs-test: needs-cuda -->"
#: The methods the package registers (read before any test registers one of its own).
BUILTIN_METHODS = registry.method_names()
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    needs_cuda: bool


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file (indented ones too, e.g. inside admonitions)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        lang = m["info"].strip().split(" ")[0].lstrip(".").lower() if m["info"].strip() else ""
        prev = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        body, j = [], i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        blocks.append(
            Block(path, i + 1, lang, textwrap.dedent("\n".join(body)), prev == NEEDS_CUDA)
        )
        i = j + 1
    return blocks


def python_pages() -> list[Path]:
    return [p for p in DOC_FILES if any(b.lang in ("python", "py") for b in code_blocks(p))]


def _cuda_reason() -> str | None:
    """None where CUDA blocks can run, else why not."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (the Warp engine is checked on Warp's CPU device in test_warp.py)"
    if importlib.util.find_spec("mujoco_warp") is None:
        return "MuJoCo Warp is not installed (pip install 'metarobot[gpu]')"
    return None


@pytest.mark.parametrize("page", python_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "experiments").symlink_to(ROOT / "experiments", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    methods, ids = dict(registry.METHODS), set(gym.registry)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    skipped = []
    try:
        for block in code_blocks(page):
            if block.lang not in ("python", "py"):
                continue
            where = f"{page.relative_to(ROOT)}:{block.line}"
            if block.needs_cuda and (reason := _cuda_reason()):
                skipped.append(f"{where}: {reason}")
                continue
            try:
                exec(compile(block.code, where, "exec"), namespace)
            except Exception as err:
                raise AssertionError(f"the Python block at {where} failed: {err!r}") from err
    finally:
        registry.METHODS.clear()
        registry.METHODS.update(methods)
        for env_id in set(gym.registry) - ids:
            del gym.registry[env_id]
    if skipped:
        pytest.skip("ran every other block; skipped " + "; ".join(skipped))


def test_code_blocks_are_labelled() -> None:
    # Shell and TOML must not be labelled python (they would run); unlabelled blocks are not
    # checked at all, so every block says what it is.
    unlabelled = [
        f"{b.path.relative_to(ROOT)}:{b.line}"
        for p in DOC_FILES
        for b in code_blocks(p)
        if not b.lang
    ]
    assert not unlabelled, f"code blocks without a language: {unlabelled}"
    shell_as_python = [
        f"{b.path.relative_to(ROOT)}:{b.line}"
        for p in DOC_FILES
        for b in code_blocks(p)
        if b.lang == "python" and re.match(r"\s*(\$ |pip |make |metarobot |python )", b.code)
    ]
    assert not shell_as_python, f"shell commands in python blocks: {shell_as_python}"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_hook", ROOT / "docs" / "hooks" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_api_reference_lists_every_public_name() -> None:
    pages = {p.uri: p.markdown for p in _hook().api_pages()}
    for uri, module in (("api/metarobot.md", metarobot), ("api/envs.md", metarobot.envs)):
        listed = re.findall(r"^::: (\S+)$", pages[uri], flags=re.M)
        assert listed == [f"{module.__name__}.{name}" for name in module.__all__]


@pytest.mark.parametrize("method", BUILTIN_METHODS)
def test_every_method_has_its_page(method: str) -> None:
    page = ROOT / "docs" / "concepts" / "methods" / f"{method}.md"
    assert page.is_file(), f"no page for method {method!r}"
    assert f"concepts/methods/{method}.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    text = page.read_text(encoding="utf-8")
    for part in ("What it is.", "Policy type.", "How it adapts.", "When to use it."):
        assert f"**{part}**" in text, f"{page.name} lacks **{part}**"
    assert re.search(r"^## Config", text, flags=re.M), f"{page.name} lacks ## Config"
    # Generated, so that a changed default or a new key cannot leave the page behind.
    assert "<!-- config-table: " in text and "| key | default |" not in text


def test_every_config_key_has_a_doc() -> None:
    hook = _hook()
    for section, cls in hook.config_sections().items():
        fields = [f.name for f in dataclasses.fields(cls)]
        docs = hook.attribute_docs(cls)
        assert list(docs) == fields, f"[{section}]: the Attributes of {cls.__name__} and its fields"
        table = hook.config_table(section).splitlines()
        assert [row.split("`")[1] for row in table[2:]] == fields


def test_config_table_marker_expands() -> None:
    hook = _hook()
    text = hook.expand_config_tables("a\n<!-- config-table: rma history z_dim -->\nb")
    assert "| `history` | 16 |" in text and "| `z_dim` | 8 |" in text
    assert "teacher_steps" not in text
    with pytest.raises(ValueError, match="no key"):
        hook.config_table("rma", ["nope"])
    with pytest.raises(ValueError, match="unknown section"):
        hook.config_table("nope")


def _package_imports() -> dict[str, set[str]]:
    """Module → the package modules it imports at run time (``TYPE_CHECKING`` blocks left out)."""
    pkg = ROOT / "metarobot"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in pkg.rglob("*.py")}
    modules = {name.removesuffix(".__init__"): p for name, p in modules.items()}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        stack: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
        while stack:
            node = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    continue
                if isinstance(child, ast.Import):
                    found |= {resolve(a.name) for a in child.names} - {None}  # type: ignore[arg-type]
                elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                    for a in child.names:
                        target = resolve(f"{child.module}.{a.name}") or resolve(child.module)
                        if target:
                            found.add(target)
                stack.append(child)
        # A package's own __init__ runs before its modules: importing it is no edge back.
        graph[name] = {m for m in found if m != name and not name.startswith(m + ".")}
    return graph


def test_imports_flow_one_way() -> None:
    graph = _package_imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], module, dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert "metarobot.returns" in graph["metarobot.registry"]
    assert "metarobot.evaluation" not in graph["metarobot.registry"]


def test_every_result_gets_a_page() -> None:
    hook = _hook()
    uris = {p.uri for p in hook.result_pages()}
    results = ROOT / "experiments" / "results"
    expected = {f"results/{p.name}.md" for p in results.iterdir() if p.is_dir()}
    expected |= {f"results/{p.stem}.md" for p in results.glob("*.md")}
    assert expected <= uris


def test_readme_is_short_and_its_links_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
    assert "docs/index.md" in targets and "mkdocs serve" in text
