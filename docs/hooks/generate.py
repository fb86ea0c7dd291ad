"""MkDocs hook: the Results and API reference pages, generated at every build.

Nothing here is copied by hand, so a result folder or a public name added later shows up in the
next build on its own:

- **Results.** Every folder of ``experiments/results/`` becomes a page ``results/<folder>.md``:
  its ``config.toml`` header comment (what the run is for), its ``summary.md`` and any other
  Markdown file in it (e.g. ``seed_verdicts.md``), its plots and videos embedded, its other files
  (CSV, TOML) linked, and the config itself. Every top-level ``experiments/results/*.md`` becomes
  a page too (benchmarks, gaps, probes, ``adapt_gain``). The prose that says what a result shows
  lives in ``docs/results/notes/<name>.md`` and is put at the top of the page of the same name;
  those notes are not pages of their own, and their links are relative to ``docs/results/``.
  The pages are added to the ``Results`` section of the nav.
- **API reference.** ``api/metarobot.md`` and ``api/envs.md`` hold one mkdocstrings directive
  per name of ``metarobot.__all__`` and ``metarobot.envs.__all__`` (read from the source with
  ``ast``; griffe reads the docstrings statically too).
- **Import path.** ``metarobot.envs`` is installed from ``envs/`` (setuptools ``package-dir``),
  which griffe's static finder cannot see through an editable install. ``build/docs-api/`` gets
  a ``metarobot/`` folder of symlinks to ``metarobot/*`` plus ``envs`` → ``envs/``, and the
  mkdocstrings handler reads the sources from there (``paths`` in ``mkdocs.yml``).
- **Config tables.** A line ``<!-- config-table: SECTION [KEY ...] -->`` in a page becomes the
  table of that config section (``meta``, ``baselines``, ``rma``, ``recurrent``, ``eval``, or
  ``experiment`` for the top-level keys): each key, its default and its one-line doc, read from
  the dataclasses of :mod:`metarobot.config` (so the build imports the package, and with it
  torch and MuJoCo). A key without a doc, an unknown section or key fails the build.
- **Cross-references.** Docstrings use Sphinx roles (``:func:`adapt```); the rendered HTML
  shows them as plain code, without the role.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import shutil
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

from metarobot import config as experiment_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results"
NOTES = ROOT / "docs" / "results" / "notes"
API_SRC = ROOT / "build" / "docs-api"

#: The nav section that receives the generated result pages.
RESULTS_SECTION = "Results"
#: Public modules whose ``__all__`` the API reference lists: (page, module, source file).
API_MODULES: tuple[tuple[str, str, Path], ...] = (
    ("api/metarobot.md", "metarobot", ROOT / "metarobot" / "__init__.py"),
    ("api/envs.md", "metarobot.envs", ROOT / "envs" / "__init__.py"),
)
_API_INTRO = {
    "metarobot": (
        "Learning: policies, meta-learners, the context methods, adaptation, checkpoints. "
        "Every name of `metarobot.__all__`, in that order."
    ),
    "metarobot.envs": (
        "Task distributions: parameter specs, tasks, the `RandomizedDynamics` wrapper, splits "
        "and the batched simulator. Every name of `metarobot.envs.__all__`, in that order."
    ),
}
#: What each plot the experiment runner writes shows (other images get their file name).
PLOT_CAPTIONS = {
    "within_episode": (
        "Mean reward per step since reset at K = 0: how fast each method adapts inside its first "
        "episode."
    ),
    "adaptation_curve": "Normalized score against K adaptation episodes (IQM, 95% CI bands).",
    "learning_curve": (
        "Training returns: meta-learners before and after adaptation, episodic PPO (DR, "
        "RMA's teacher, recurrent) against env steps."
    ),
}
#: ``<!-- config-table: SECTION [KEY ...] -->`` on a line of its own.
_CONFIG_TABLE = re.compile(r"^<!-- config-table: (\w+)((?: \w+)*) -->$", flags=re.M)
_IMAGE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".svg", ".webp")
_ROLE = re.compile(
    r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):<code>(~?)([^<]+)</code>"
)


@dataclass
class Page:
    """One generated page.

    Attributes:
        uri: Path of the page inside the docs (``results/quickstart.md``).
        label: Its title in the nav.
        group: Nav group under Results (``""``: directly under Results).
        markdown: The page's Markdown.
        assets: ``(uri, file on disk)`` of every file the page embeds or links.
    """

    uri: str
    label: str
    group: str
    markdown: str
    assets: list[tuple[str, Path]] = field(default_factory=list)


# ---------------------------------------------------------------------- API reference


def public_names(init: Path) -> list[str]:
    """The names of a module's ``__all__``, read from its source without importing it.

    Args:
        init: The module's source file.

    Returns:
        The names, in the order of ``__all__``.

    Raises:
        ValueError: If the module has no literal ``__all__`` list.
    """
    tree = ast.parse(init.read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = ast.literal_eval(node.value)  # type: ignore[union-attr]
            return [str(v) for v in value]
    raise ValueError(f"{init} has no literal __all__")


def api_pages() -> list[Page]:
    """One page per public module, one mkdocstrings directive per name of its ``__all__``."""
    pages = []
    for uri, module, init in API_MODULES:
        lines = [f"# `{module}`", "", _API_INTRO[module], ""]
        for name in public_names(init):
            lines += [f"::: {module}.{name}", ""]
        pages.append(Page(uri, module, "", "\n".join(lines)))
    return pages


def build_api_sources() -> Path:
    """Lay out ``metarobot`` with ``metarobot.envs`` inside it, as symlinks, for griffe."""
    pkg = API_SRC / "metarobot"
    if API_SRC.exists():
        shutil.rmtree(API_SRC)
    pkg.mkdir(parents=True)
    for item in sorted((ROOT / "metarobot").iterdir()):
        if item.name != "__pycache__":
            (pkg / item.name).symlink_to(item)
    (pkg / "envs").symlink_to(ROOT / "envs", target_is_directory=True)
    return API_SRC


# ---------------------------------------------------------------------- config tables


def config_sections() -> dict[str, type]:
    """``{section name: its dataclass}``; ``experiment`` is the top level."""
    hints = typing.get_type_hints(experiment_config.ExperimentConfig)
    sections: dict[str, type] = {"experiment": experiment_config.ExperimentConfig}
    for f in dataclasses.fields(experiment_config.ExperimentConfig):
        if dataclasses.is_dataclass(hints[f.name]):
            sections[f.name] = hints[f.name]
    return sections


def attribute_docs(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of a Google-style class docstring, one string per name."""
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    docs: dict[str, str] = {}
    if "Attributes:" not in lines:
        return docs
    name = None
    for line in lines[lines.index("Attributes:") + 1 :]:
        if line.strip() and not line.startswith("    "):
            break  # the next section
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            name = entry.group(1)
            docs[name] = entry.group(2).strip()
        elif name is not None and line.strip():
            docs[name] += " " + line.strip()
    return docs


def _toml_value(value: Any) -> str:
    """A default as it is written in TOML (``None``: the key left out)."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]`"
    if dataclasses.is_dataclass(value):
        return "its table"
    return f"`{value!r}`"


def _markdown_doc(text: str) -> str:
    """A docstring line as Markdown: Sphinx roles and RST literals as code, pipes escaped."""
    text = re.sub(
        r":(?:py:)?\w+:`(~?)([^`]+)`",
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`",
        text,
    )
    return text.replace("``", "`").replace("|", "\\|")


def config_table(section: str, keys: Sequence[str] = ()) -> str:
    """The Markdown table of one config section: key, default, meaning.

    Args:
        section: ``meta``, ``baselines``, ``rma``, ``recurrent``, ``eval`` or ``experiment``
            (the top-level keys).
        keys: The keys to list, in this order; empty: every key of the section.

    Raises:
        ValueError: On an unknown section or key, or a key whose doc is missing.
    """
    sections = config_sections()
    if section not in sections:
        raise ValueError(f"config-table: unknown section {section!r}; known: {list(sections)}")
    cls = sections[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    docs = attribute_docs(cls)
    unknown = [k for k in keys if k not in fields]
    if unknown:
        raise ValueError(f"config-table: [{section}] has no key(s) {unknown}")
    rows = ["| key | default | meaning |", "|---|---:|---|"]
    for name in keys or list(fields):
        f = fields[name]
        if name not in docs:
            raise ValueError(f"config: {cls.__name__}.{name} has no doc in its Attributes")
        if f.default is not dataclasses.MISSING:
            default = _toml_value(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _toml_value(f.default_factory())
        else:
            default = "required"
        rows.append(f"| `{name}` | {default} | {_markdown_doc(docs[name])} |")
    return "\n".join(rows)


def expand_config_tables(markdown: str) -> str:
    """Replace every ``<!-- config-table: ... -->`` line by its table."""
    return _CONFIG_TABLE.sub(lambda m: config_table(m.group(1), m.group(2).split()), markdown)


# ---------------------------------------------------------------------- results


def _notes(name: str) -> str:
    path = NOTES / f"{name}.md"
    return path.read_text(encoding="utf-8").strip() + "\n" if path.is_file() else ""


def _demote(markdown: str) -> str:
    """Every heading one level down (``#`` → ``##``), outside code fences."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        out.append("#" + line if not fenced and re.match(r"#{1,5} ", line) else line)
    return "\n".join(out)


def _split_title(markdown: str, default: str) -> tuple[str, str]:
    """``(first H1 text, the rest)``; ``default`` when the file has no leading H1."""
    lines = markdown.strip().splitlines()
    if lines and lines[0].startswith("# "):
        return lines[0][2:].strip(), "\n".join(lines[1:]).strip()
    return default, markdown.strip()


def _config_comment(config: Path) -> str:
    """The ``#`` comment block at the top of a config: what the run is for."""
    text = []
    for line in config.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text.append(line.lstrip("#").strip())
    return " ".join(t for t in text if t)


def _config_description(config: Path) -> str:
    try:
        return str(tomllib.loads(config.read_text(encoding="utf-8")).get("description", ""))
    except tomllib.TOMLDecodeError:
        return ""


def _image(uri: str, name: str) -> list[str]:
    stem = Path(name).stem
    caption = PLOT_CAPTIONS.get(stem, f"`{name}`")
    return [f"![{stem}]({uri})", "", f"*{caption}*", ""]


def _plot_order(path: Path) -> tuple[int, str]:
    """The runner's plots first, in the order of :data:`PLOT_CAPTIONS`, then by name."""
    order = list(PLOT_CAPTIONS)
    return (order.index(path.stem) if path.stem in order else len(order), path.name)


def folder_page(folder: Path) -> Page:
    """The page of one result folder (a table, a video folder, ...)."""
    name = folder.name
    files = sorted(p for p in folder.iterdir() if p.is_file())
    md_files = [p for p in files if p.suffix == ".md"]
    summary = folder / "summary.md"
    if summary in md_files:  # the table first, then the other Markdown files
        md_files.remove(summary)
        md_files.insert(0, summary)
    config = folder / "config.toml"
    assets = [(f"results/{name}/{p.name}", p) for p in files if p.suffix != ".md"]

    title, body = name, ""
    if md_files and md_files[0] == summary:
        title, body = _split_title(summary.read_text(encoding="utf-8"), name)
    lines = [f"# {title}", ""]
    if config.is_file() and _config_description(config):
        lines += [f"*{_config_description(config)}*", ""]
    lines += [f"Folder: `experiments/results/{name}/`.", ""]
    if config.is_file() and _config_comment(config):
        lines += [f"> **What the config says it is for:** {_config_comment(config)}", ""]
    if notes := _notes(name):
        lines += ["## What it shows", "", notes]
    images = [p for p in files if p.suffix.lower() in _IMAGE_SUFFIXES]
    extras = md_files[1 if body else 0 :]
    owned = {p for p in images for md in extras if p.stem == md.stem}  # shown with their report
    loose = sorted((p for p in images if p not in owned), key=_plot_order)
    if loose:
        lines += ["## Plots and videos" if len(loose) > 1 else "## Plot", ""]
        for p in loose:
            lines += _image(f"{name}/{p.name}", p.name)
    if body:
        lines += ["## The table (`summary.md`)", "", _demote(body), ""]
    for extra in extras:
        lines += [f"## `{extra.name}`", "", _demote(_demote(extra.read_text("utf-8"))), ""]
        for p in sorted(q for q in owned if q.stem == extra.stem):
            lines += _image(f"{name}/{p.name}", p.name)
    others = [p for p in files if p.suffix != ".md" and p not in images]
    if others:
        lines += ["## Files", ""]
        lines += [f"- [`{p.name}`]({name}/{p.name})" for p in others]
        lines.append("")
    if config.is_file():
        lines += ['??? note "The exact config (`config.toml`)"', "", "    ```toml"]
        lines += [f"    {line}".rstrip() for line in config.read_text("utf-8").splitlines()]
        lines += ["    ```", ""]
    group = "Tables" if config.is_file() or summary.is_file() else ""
    return Page(f"results/{name}.md", name, group, "\n".join(lines), assets)


def file_page(path: Path) -> Page:
    """The page of one top-level result file (``gaps.md``, ``bench_sim.md``, ...)."""
    name = path.stem
    title, body = _split_title(path.read_text(encoding="utf-8"), name)
    companions = sorted(p for p in RESULTS.glob(f"{name}.*") if p.suffix != ".md")
    lines = [f"# {title}", "", f"File: `experiments/results/{path.name}`.", ""]
    if notes := _notes(name):
        lines += ["## What it shows", "", notes]
    lines += [body, ""]
    if companions:
        lines += ["## Files", ""] + [f"- [`{p.name}`]({p.name})" for p in companions] + [""]
    group = "Benchmarks" if name.startswith(("bench_", "fuzz_")) else "Analyses"
    assets = [(f"results/{p.name}", p) for p in companions]
    return Page(f"results/{name}.md", name, group, "\n".join(lines), assets)


def _table_order(page: Page) -> tuple[int, str]:
    return (0 if page.label.startswith("quickstart") else 1, page.label)


def result_pages(results: Path = RESULTS) -> list[Page]:
    """Every generated result page: folders (quickstart first), then top-level files."""
    if not results.is_dir():
        return []
    folders = [folder_page(p) for p in sorted(results.iterdir()) if p.is_dir()]
    files = [file_page(p) for p in sorted(results.glob("*.md"))]
    return sorted(folders, key=_table_order) + files


def results_nav(pages: list[Page]) -> list[Any]:
    """Nav entries of the generated pages, grouped (Tables, Analyses, Benchmarks)."""
    nav: list[Any] = []
    groups: dict[str, list[Any]] = {}
    for page in pages:
        entry = {page.label: page.uri}
        if page.group:
            if page.group not in groups:
                groups[page.group] = []
                nav.append({page.group: groups[page.group]})
            groups[page.group].append(entry)
        else:
            nav.append(entry)
    return nav


def results_index(pages: list[Page]) -> str:
    """Markdown list of every generated result page (appended to ``results/index.md``)."""
    lines = [
        "",
        "## Every result page",
        "",
        "Generated from `experiments/results/` at build time.",
        "",
    ]
    for page in pages:
        where = f" ({page.group.lower()})" if page.group else ""
        lines.append(f"- [{page.label}]({Path(page.uri).name}){where}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- MkDocs events


@event_priority(100)  # before mkdocstrings' on_config, which drops search paths that do not exist
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Lay out the API sources and put the generated result pages into the nav."""
    build_api_sources()
    for item in config.nav or []:
        if isinstance(item, dict) and RESULTS_SECTION in item:
            section = item[RESULTS_SECTION]
            item[RESULTS_SECTION] = [*section, *results_nav(result_pages())]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages and the files they embed or link."""
    pages = result_pages()
    for page in [*api_pages(), *pages]:
        files.append(File.generated(config, page.uri, content=page.markdown))
        for uri, path in page.assets:
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    index = files.get_file_from_path("results/index.md")
    if index is not None:
        index.content_string = index.content_string + results_index(pages)
    return files


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Expand the config-table markers."""
    return expand_config_tables(markdown)


def on_page_content(html: str, **kwargs: Any) -> str:
    """Show Sphinx roles of docstrings (``:func:`x```) as plain code."""
    return _ROLE.sub(_plain_code, html)


def _plain_code(match: re.Match[str]) -> str:
    """``~a.b.C`` shows ``C`` (as Sphinx does), ``a.b.C`` shows ``a.b.C``."""
    target = match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if match.group(1) else target}</code>"
