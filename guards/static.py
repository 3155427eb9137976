"""Static scan of a candidate policy's source, before it is ever run.

The sandbox is the wall; this scan is the first, cheap and explainable line: it refuses sources
that reach for files, the network, processes, reflection or code generation, and sources that
carry memorised lookup tables. It works on the AST only, never imports or runs the candidate,
and names every problem by line. Rules are deliberately strict (fail closed): a legitimate policy
needs numbers and data frames, not introspection.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from domains import _source
from guards._result import GuardName, GuardResult

# Builtins that run code, read the process's namespaces or read input.
BANNED_CALLABLES = frozenset({
    "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint", "input",
    "help", "license", "credits", "copyright", "exit", "quit",
})
REFLECTION = frozenset({"getattr", "setattr", "delattr"})
# Modules that reach files, processes, the network or the interpreter; banned as names and attributes.
BANNED_MODULES = frozenset({
    "importlib", "os", "sys", "subprocess", "socket", "ctypes", "pickle", "marshal", "shutil", "pathlib", "io",
    "builtins", "multiprocessing", "threading", "signal", "urllib", "http", "requests",
})
# Same reach, seen as attributes of allowed libraries (np.ctypeslib, xgboost.collective, ...).
BANNED_SUBMODULES = frozenset({
    "npyio", "ctypeslib", "joblib", "tempfile", "glob", "fsspec", "dill", "cloudpickle", "sqlite3", "mmap", "gc",
    "inspect", "runpy", "asyncio", "concurrent", "socketserver", "ftplib", "smtplib", "webbrowser", "zipfile",
    "tarfile", "gzip", "bz2", "lzma", "codecs", "resource", "pty", "fcntl", "posix", "platform", "sysconfig",
    "site", "datasets", "f2py", "distutils", "extbuild", "pooch", "urllib3", "httpx", "aiohttp", "xmlrpc", "pdb",
    "faulthandler", "atexit", "collective", "tracker", "rabit", "dask", "spark",
})
# Library functions that read or write files or URLs, or evaluate strings as code.
IO_NAMES = frozenset({
    "to_csv", "to_parquet", "to_pickle", "to_json", "to_excel", "to_sql", "to_hdf", "to_feather", "to_stata",
    "to_orc", "to_xml", "to_html", "to_latex", "to_markdown", "to_clipboard", "to_gbq", "load", "loads", "save",
    "savez", "savez_compressed", "fromfile", "tofile", "memmap", "open_memmap", "genfromtxt", "loadtxt",
    "savetxt", "fromregex", "dump", "dumps", "DataSource", "HDFStore", "ExcelWriter", "ExcelFile", "urlopen",
    "urlretrieve", "savefig", "render", "to_graphviz", "plot_tree", "export_graphviz", "TrainingCheckPoint",
    "get_type_hints", "ForwardRef", "evaluate_forward_ref", "query", "tempdir", "temppath",
})
# Keyword arguments that hand a library a file path (xgboost's model_file and cache_prefix, ...).
FILE_KEYWORDS = frozenset({
    "model_file", "cache_prefix", "fname", "filename", "path_or_buf", "filepath_or_buffer", "out_file", "fout",
})
IO_PREFIXES = ("read_", "write_", "load_", "save_", "dump_", "fetch_")
# Frame, traceback and code objects lead back to every namespace in the process.
INTROSPECTION = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "f_globals",
    "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code", "co_consts", "func_globals",
    "func_code",
})
ALLOWED_DUNDER_NAMES = frozenset({"__name__", "__all__", "__doc__"})
SELF_NAMES = frozenset({"self", "cls"})
DUNDER = re.compile(r"__\w+__")
FORMAT_ATTRIBUTE = re.compile(r"\{[^{}]*\._")  # "{0.__class__}".format(x) walks attributes at run time
MAX_LISTED = 15


@dataclass(frozen=True)
class Finding:
    """One problem in the source, with its position."""

    line: int
    col: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _root(node: ast.AST) -> str | None:
    """The name an attribute chain starts from (`np` in `np.lib.x`), if it starts from a name."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _io_name(name: str) -> bool:
    return name in IO_NAMES or name.startswith(IO_PREFIXES)


def _banned_exact(name: str) -> bool:
    """A name that must not be looked up dynamically (string arguments match these exactly)."""
    return (name in BANNED_CALLABLES or name in REFLECTION or name in BANNED_MODULES or name in BANNED_SUBMODULES
            or name in INTROSPECTION or name in IO_NAMES or _is_dunder(name))


def _banned_word(name: str) -> bool:
    """A name that must not appear as an imported name or a reflected attribute."""
    return _banned_exact(name) or _io_name(name)


class _Scanner(ast.NodeVisitor):
    def __init__(self, allowed: Sequence[str], max_literal_len: int, max_items: int) -> None:
        self.allowed = frozenset(allowed)
        self.allowed_text = ", ".join(sorted(self.allowed)) or "none"
        self.max_literal_len = max_literal_len
        self.max_items = max_items
        self.found: list[Finding] = []
        self.checked_calls: set[int] = set()  # Name nodes of reflection calls already judged
        self.inner_displays: set[int] = set()  # displays nested in a larger one: counted with it
        self.imported: set[str] = set()

    def collect_imports(self, tree: ast.AST) -> None:
        """Names bound by import statements: private attributes below them are library internals."""
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    self.imported.add(alias.asname or alias.name.split(".")[0])

    def add(self, node: ast.AST, rule: str, message: str) -> None:
        self.found.append(Finding(getattr(node, "lineno", 0), getattr(node, "col_offset", 0), rule, message))

    # --- imports ------------------------------------------------------------------------------
    def _check_module(self, node: ast.AST, module: str) -> None:
        parts = module.split(".")
        if parts[0] in BANNED_MODULES or parts[0] not in self.allowed:
            self.add(node, "import", f"import of '{module}' is not allowed (allowed: {self.allowed_text})")
            return
        for part in parts[1:]:
            if part.startswith("_") or part in BANNED_MODULES or part in BANNED_SUBMODULES:
                self.add(node, "import", f"import of '{module}' reaches the private or banned module '{part}'")
                return

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add(node, "import", f"relative import 'from {'.' * node.level}{node.module or ''}' is not allowed")
            return
        self._check_module(node, node.module or "")
        for alias in node.names:
            if alias.name == "*":
                self.add(node, "import", f"'from {node.module} import *' is not allowed: import names explicitly")
            elif alias.name.startswith("_") and node.module != "__future__" or _banned_word(alias.name):
                self.add(node, "import", f"importing '{alias.name}' from '{node.module}' is not allowed "
                         "(file, network, process or reflection access)")
        self.generic_visit(node)

    # --- names and attributes -------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name in BANNED_CALLABLES:
            self.add(node, "builtin", f"use of builtin '{name}' is not allowed")
        elif name in REFLECTION and id(node) not in self.checked_calls:
            self.add(node, "reflection", f"'{name}' may only be called directly with a literal attribute name")
        elif name in BANNED_MODULES:
            self.add(node, "module", f"name '{name}' refers to a banned module (files, processes, network)")
        elif _is_dunder(name) and name not in ALLOWED_DUNDER_NAMES:
            self.add(node, "dunder", f"use of '{name}' is not allowed (interpreter internals)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr, base = node.attr, node.value
        on_self = isinstance(base, ast.Name) and base.id in SELF_NAMES
        if isinstance(node.ctx, (ast.Store, ast.Del)) and _root(node) in self.imported:
            self.add(node, "monkeypatch", f"assigning to '{ast.unparse(node)}' changes a library in place; "
                     "not allowed (the scorer must see libraries as shipped)")
        if _is_dunder(attr):
            is_super_init = (attr == "__init__" and isinstance(base, ast.Call) and isinstance(base.func, ast.Name)
                             and base.func.id == "super")
            if not is_super_init:
                self.add(node, "dunder", f"access to dunder attribute '.{attr}' is not allowed")
        elif attr in BANNED_MODULES or attr in BANNED_SUBMODULES:
            self.add(node, "module", f"attribute '.{attr}' reaches a banned module through another module")
        elif attr in BANNED_CALLABLES or attr in REFLECTION:
            self.add(node, "builtin", f"attribute '.{attr}' is not allowed (runs code or reads input)")
        elif attr in INTROSPECTION:
            self.add(node, "introspection", f"attribute '.{attr}' exposes frames or code objects")
        elif on_self:
            pass  # the policy's own attributes may be private or named like I/O helpers
        elif attr.startswith("_") and _root(node) in self.imported:
            self.add(node, "private", f"access to private attribute '.{attr}' of a library is not allowed")
        elif _io_name(attr):
            self.add(node, "io", f"'.{attr}' reads or writes files, URLs or evaluates strings; not allowed in a "
                     "policy (data arrives through fit() and decide())")
        self.generic_visit(node)

    def visit_match_case(self, node: ast.match_case) -> None:
        for sub in ast.walk(node.pattern):
            for attr in getattr(sub, "kwd_attrs", ()):
                if attr.startswith("_") or _banned_word(attr):
                    self.add(sub, "dunder", f"class pattern reads attribute '{attr}', which is not allowed")
        self.generic_visit(node)

    # --- calls ------------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in REFLECTION:
            self._check_reflection(node, func)
        if isinstance(func, ast.Attribute) and func.attr == "to_string":
            if node.args or any(k.arg == "buf" for k in node.keywords):
                self.add(node, "io", "'.to_string' with a buffer writes a file; call it without arguments")
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "DMatrix" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            self.add(node, "io", "'DMatrix' from a file path or URI is not allowed")
        for k in node.keywords:
            if k.arg in FILE_KEYWORDS:
                self.add(node, "io", f"'{k.arg}=' hands a library a file path; not allowed")
        reflected = isinstance(func, ast.Name) and func.id in REFLECTION  # judged in _check_reflection
        for arg in [] if reflected else [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                text = arg.value
                # Prefix rules (read_*, load_*) are skipped here: column names like "load_time" are common.
                if _banned_exact(text) or DUNDER.search(text):
                    self.add(arg, "string-call", f"string argument {text[:40]!r} names a banned function, module "
                             "or dunder (dynamic lookup)")
        self.generic_visit(node)

    def _check_reflection(self, node: ast.Call, func: ast.Name) -> None:
        self.checked_calls.add(id(func))
        name_arg = node.args[1] if len(node.args) > 1 else None
        if not (isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str)):
            self.add(node, "reflection", f"'{func.id}' with a computed attribute name is not allowed")
            return
        on_self = isinstance(node.args[0], ast.Name) and node.args[0].id in SELF_NAMES
        attr = name_arg.value
        if func.id != "getattr" and _root(node.args[0]) in self.imported:
            self.add(node, "monkeypatch", f"'{func.id}' on the library object '{ast.unparse(node.args[0])}' "
                     "is not allowed")
        if _banned_word(attr) or (attr.startswith("_") and not on_self):
            self.add(node, "reflection", f"'{func.id}' of the private, dunder or banned attribute '{attr}' is not "
                     "allowed")

    # --- literals ---------------------------------------------------------------------------------
    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, (str, bytes)) and len(value) > self.max_literal_len:
            self.add(node, "literal", f"a {len(value)}-character literal exceeds {self.max_literal_len} "
                     "(embedded data or a memorised table)")
        if isinstance(value, str) and FORMAT_ATTRIBUTE.search(value):
            self.add(node, "format", "format string reads a private or dunder attribute ('{x._...}')")

    def _items(self, node: ast.AST) -> int:
        """Literal items inside a display, nested displays included (a table of pairs counts both)."""
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            elements = node.elts
        elif isinstance(node, ast.Dict):
            elements = node.values
        else:
            return 1
        total = 0
        for e in elements:
            if isinstance(e, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
                self.inner_displays.add(id(e))
            total += self._items(e)
        return total

    def _display(self, node: ast.AST) -> None:
        if id(node) not in self.inner_displays:
            n = self._items(node)
            if n > self.max_items:
                kind = type(node).__name__.lower()
                self.add(node, "collection", f"a {kind} display holds {n} literal items (limit {self.max_items}): "
                         "memorised lookup tables are not allowed")
        self.generic_visit(node)

    visit_List = visit_Tuple = visit_Set = visit_Dict = _display


def parse_tree(source: str) -> ast.Module:
    """The source's shared syntax tree (domains._source: parsed once per candidate, under a size ceiling)."""
    return _source.parse(source)


def findings(source: str, *, allowed_imports: Sequence[str], max_literal_len: int = 2000,
             max_collection_items: int = 200,
             max_policy_bytes: int = _source.DEFAULT_MAX_BYTES) -> list[Finding]:
    """Every problem in `source`, sorted by position (empty when the source is acceptable). A source over
    `max_policy_bytes` is one finding, found before any parse (parsing a huge file costs minutes and gigabytes)."""
    too_large = _source.size_problem(source, max_policy_bytes)
    if too_large:
        return [Finding(0, 0, "size", too_large)]
    try:
        tree = parse_tree(source)
    except SyntaxError as exc:
        return [Finding(exc.lineno or 0, (exc.offset or 1) - 1, "syntax", f"syntax error: {exc.msg}")]
    scanner = _Scanner(allowed_imports, max_literal_len, max_collection_items)
    scanner.collect_imports(tree)
    scanner.visit(tree)
    unique = dict.fromkeys(scanner.found)  # the same problem reported twice at one spot is one problem
    return sorted(unique, key=lambda f: (f.line, f.col, f.rule))


def scan(source: str, *, allowed_imports: Sequence[str], max_literal_len: int = 2000,
         max_collection_items: int = 200, max_policy_bytes: int = _source.DEFAULT_MAX_BYTES) -> GuardResult:
    """The static guard: passes when `findings` is empty; the detail lists problems line by line."""
    found = findings(source, allowed_imports=allowed_imports, max_literal_len=max_literal_len,
                     max_collection_items=max_collection_items, max_policy_bytes=max_policy_bytes)
    if found and found[0].rule == "size":
        return GuardResult(GuardName.STATIC, False, found[0].message,
                           {"findings": 1, "rules": "size", "bytes": _source.size_of(source),
                            "limit": max_policy_bytes})
    lines = source.count("\n") + 1
    figures: dict[str, int | str] = {"findings": len(found), "lines": lines,
                                     "rules": ",".join(sorted({f.rule for f in found}))}
    if not found:
        return GuardResult(GuardName.STATIC, True, f"static scan: no findings in {lines} lines", figures)
    figures["first_line"] = found[0].line
    listed = "; ".join(str(f) for f in found[:MAX_LISTED])
    more = f"; and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED else ""
    plural = "problem" if len(found) == 1 else "problems"
    return GuardResult(GuardName.STATIC, False,
                       f"policy source has {len(found)} static {plural}: {listed}{more}", figures)


def has_contract(source: str, required: Iterable[str] = ("fit", "decide")) -> list[str]:
    """The required functions that `source` does not define at top level (all of them if it does not parse)."""
    try:
        tree = parse_tree(source)
    except SyntaxError:  # SourceTooLarge too: nothing over the ceiling is parsed
        return list(required)
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    return [name for name in required if name not in defined]
