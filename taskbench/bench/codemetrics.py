"""Code size and cyclomatic complexity of a Python module, from its syntax tree alone.

The report rates maintainability in words ("Code Complexity: Medium"); the
scorecard measures it. :func:`measure_source` (and :func:`measure_file`,
:func:`measure_module`) count a module's functions, its lines of code and
each function's cyclomatic complexity; :func:`store_modules` lists the
module behind each store backend, and :func:`metrics_frame` tabulates them.

The rules, so every number can be recomputed by hand:

* **Lines of code** are the lines that hold at least one token of code:
  blank lines, comment-only lines and docstrings (of the module, a class or
  a function) do not count; a statement spread over three lines counts
  three; a multi-line string that is not a docstring counts every line.
* **Functions** are ``def`` and ``async def`` statements, methods and
  nested functions included. A lambda belongs to the function it is in.
* **Cyclomatic complexity** of a function (McCabe: one plus the number of
  decision points) counts +1 for each ``if``/``elif``, conditional
  expression, ``for``/``async for``, ``while``, ``except`` clause, ``case``
  of a ``match``, ``assert``, comprehension ``for`` and comprehension
  ``if``, and +(n-1) for a boolean operator joining n operands (``a and b
  and c`` is +2). A nested function is measured on its own and adds nothing
  to the function around it. Code outside any function is not measured.
  This is radon's rule (ruff's C901 leaves out boolean operators, so its
  numbers can be lower).

Design rules: standard library only (``ast`` and ``tokenize``, no new
dependency); pandas is imported only by :func:`metrics_frame`.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import statistics
import tokenize
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from taskbench.bench.environment import requires_extra
from taskbench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

__all__ = [
    "FunctionMetrics",
    "ModuleMetrics",
    "complexity",
    "measure_file",
    "measure_module",
    "measure_source",
    "metrics_frame",
    "store_modules",
]

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
NOT_CODE = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENCODING,
        tokenize.ENDMARKER,
    }
)
ONE_DECISION = (
    ast.If,
    ast.IfExp,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.ExceptHandler,
    ast.match_case,
    ast.Assert,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionMetrics:
    """One function: its qualified name, first line and cyclomatic complexity."""

    name: str
    line: int
    complexity: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleMetrics:
    """One module's size and complexity (see the module docstring for the rules)."""

    path: str
    lines_of_code: int
    functions: int
    complexity_mean: float
    """Mean over the functions (0.0 for a module without functions)."""
    complexity_max: int
    per_function: tuple[FunctionMetrics, ...]


# -- complexity ------------------------------------------------------------------------


def _decisions(node: ast.AST) -> int:
    """Decision points that ``node`` itself adds (its children are counted separately)."""
    if isinstance(node, ONE_DECISION):
        return 1
    if isinstance(node, ast.BoolOp):
        return len(node.values) - 1
    if isinstance(node, ast.comprehension):
        return 1 + len(node.ifs)
    return 0


def _is_scope(node: ast.AST) -> bool:
    """A nested function or class: measured on its own, not as part of the function around it."""
    return isinstance(node, FunctionNode | ast.ClassDef)


def _own_nodes(function: FunctionNode) -> Iterator[ast.AST]:
    """Every node of ``function``'s body, not descending into nested functions or classes."""
    pending: list[ast.AST] = [node for node in function.body if not _is_scope(node)]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(child for child in ast.iter_child_nodes(node) if not _is_scope(child))


def complexity(function: FunctionNode) -> int:
    """The cyclomatic complexity of one function (nested functions excluded)."""
    return 1 + sum(_decisions(node) for node in _own_nodes(function))


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, FunctionNode]]:
    """``(qualified name, node)`` of every function in ``tree``, nested ones included."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, FunctionNode):
            name = f"{prefix}{child.name}"
            yield name, child
            yield from _functions(child, f"{name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


# -- lines of code ---------------------------------------------------------------------


def _docstring_lines(tree: ast.Module) -> set[int]:
    """The lines taken by the docstrings of the module, its classes and its functions."""
    owners = [tree, *(n for n in ast.walk(tree) if isinstance(n, FunctionNode | ast.ClassDef))]
    lines: set[int] = set()
    for owner in owners:
        first = owner.body[0] if owner.body else None
        if ast.get_docstring(owner, clean=False) is not None and first is not None:
            lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def _token_lines(source: str) -> set[int]:
    """The lines on which a token of code (not a comment) starts, ends or continues."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def lines_of_code(source: str, tree: ast.Module) -> int:
    """Lines holding code: no blank lines, comments or docstrings."""
    return len(_token_lines(source) - _docstring_lines(tree))


# -- modules ---------------------------------------------------------------------------


def measure_source(source: str, path: str = "<source>") -> ModuleMetrics:
    """Measure the module whose text is ``source`` (ConfigError if it does not parse)."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise ConfigError(f"cannot measure {path}: {exc.msg} (line {exc.lineno})") from None
    functions = tuple(
        FunctionMetrics(name=name, line=node.lineno, complexity=complexity(node))
        for name, node in _functions(tree)
    )
    scores = [f.complexity for f in functions]
    return ModuleMetrics(
        path=path,
        lines_of_code=lines_of_code(source, tree),
        functions=len(functions),
        complexity_mean=statistics.fmean(scores) if scores else 0.0,
        complexity_max=max(scores, default=0),
        per_function=functions,
    )


def measure_file(path: str | Path) -> ModuleMetrics:
    """Measure the Python file at ``path``."""
    file = Path(path)
    try:
        source = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    return measure_source(source, str(file))


def module_path(module: str) -> Path:
    """The source file of an importable module, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ConfigError(f"no Python source file for module {module!r}")
    return Path(spec.origin)


def measure_module(module: str) -> ModuleMetrics:
    """Measure an importable module by name (``"taskbench.stores.redis"``)."""
    return measure_file(module_path(module))


def store_modules() -> dict[str, str]:
    """``{backend: module}`` for each store backend (``{"sqlite": "taskbench.stores.sqlite"}``)."""
    from taskbench.stores import STORES

    modules = sorted({backend.module for backend in STORES.backends.values()})
    return {module.rpartition(".")[2]: module for module in modules}


def _row(name: str, metrics: ModuleMetrics) -> dict[str, object]:
    row = asdict(metrics)
    del row["per_function"]
    return {"name": name, **row}


def metrics_frame(modules: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per module (default: every store backend): size and complexity, by name."""
    with requires_extra("tabulating code metrics"):
        import pandas as pd
    chosen = store_modules() if modules is None else modules
    rows = [_row(name, measure_module(module)) for name, module in chosen.items()]
    return pd.DataFrame(rows).set_index("name")
