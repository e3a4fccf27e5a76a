"""The SQL read path: one read statement, checked on ClickHouse's own parse tree, run bounded.

Rules a statement must pass (`check_read`), each judged on the tree that
`EXPLAIN AST` prints, not on the text:

* exactly one statement (`formatQuerySingleLine` parses one or fails);
* a read: SELECT (with WITH, UNION, INTERSECT), SHOW, DESCRIBE, EXISTS, or
  EXPLAIN of one;
* no table function but those that make numbers (`TABLE_FUNCTIONS`): file(),
  url(), s3(), remote(), Python() and the rest reach outside the store;
* no scalar function that reads the host (`HOST_FUNCTIONS`): `readonly=1`
  does not stop scalar `file()`, and chDB, as clickhouse-local, confines no
  path to `user_files_path`;
* no SETTINGS, FORMAT or INTO OUTFILE clause: limits come from config, the
  format is a request field, and readonly does not stop INTO OUTFILE.

A statement that passes runs with `read_settings`: readonly, time, memory
and result-size limits, and a `log_comment` marker by which `cancel` finds
and kills it when the client goes away or the gateway stops.

A reader scoped by the access policy (`ReadScope`: roles read_raw and
read_validated) passes more rules (`check_scope`), on the same tree:

* SELECT only;
* every table it names (in FROM and JOIN, in subqueries, as the right side
  of IN) is one of its role's tables in the region's database: no system
  tables, no other region's database, no CTE named like a table;
* no function that reads a table by a name in a string (joinGet, dictGet...);

and it runs with `additional_table_filters` naming each of those tables, so
ClickHouse itself applies `tenant IN (<the reader's tenants>)` (and, for
read_validated, `empty(quality_flags)`) to every row read under those names.
The filter is set after the statement's own text, and readonly = 1 after it,
so the statement cannot lift it.
"""

from __future__ import annotations

from dataclasses import dataclass

from telemetry_gateway.gateway.errors import QueryRefused
from telemetry_gateway.schema.ddl import quote

READ_ROOTS = ("Select", "Show", "Describe", "Exists", "Explain")
TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generate_series",
                             "generateseries", "view"})
HOST_FUNCTIONS = frozenset({"file"})


@dataclass(frozen=True)
class ReadLimits:
    timeout_s: float = 30.0
    max_memory_bytes: int = 1 << 30
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 256 << 20


# Tables (and views) a scoped reader may name, by role; every one has a tenant column.
RAW_TABLES = frozenset({"metric_points", "samples", "histogram_points", "exp_histogram_points", "summary_points",
                        "series", "prometheus_histograms", "log_records", "spans", "ingest_log"})
VALIDATED_TABLES = frozenset({"metric_points", "prometheus_histograms"})
_FLAGGED = frozenset({"metric_points"})  # tables whose rows carry quality_flags
IN_FUNCTIONS = frozenset({"in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin",
                          "globalnotnullin"})
_BY_NAME = ("joinget", "dictget", "dicthas", "dictis", "hascolumnintable", "file", "url")


@dataclass(frozen=True)
class ReadScope:
    """What a policy-scoped reader may see: its tenants' rows of its role's tables."""

    tenants: tuple[str, ...]
    validated_only: bool

    @property
    def tables(self) -> frozenset[str]:
        return VALIDATED_TABLES if self.validated_only else RAW_TABLES

    def filters(self, database: str) -> str:
        """The `additional_table_filters` map: each allowed table, bare and qualified."""
        tenants = ", ".join(quote(t) for t in self.tenants)
        entries = []
        for table in sorted(self.tables):
            condition = f"tenant IN ({tenants})"
            if self.validated_only and table in _FLAGGED:
                condition += " AND empty(quality_flags)"
            for name in (table, f"{database}.{table}"):
                entries.append(f"{quote(name)}: {quote(condition)}")
        return "{" + ", ".join(entries) + "}"


@dataclass(frozen=True)
class _Node:
    depth: int
    kind: str
    name: str  # a Function's, Identifier's or TableIdentifier's name, else ""
    children: int
    parent: int  # index of the parent node, -1 for the root


def _nodes(ast: str) -> list[_Node]:
    nodes: list[_Node] = []
    for line in ast.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        words = line.split()
        children = int(words[-1].rstrip(")")) if len(words) >= 2 and words[-2] == "(children" else 0
        named = words[0] in ("Function", "Identifier", "TableIdentifier") and len(words) > 1
        parent = next((i for i in range(len(nodes) - 1, -1, -1) if nodes[i].depth < depth), -1)
        nodes.append(_Node(depth, words[0], words[1] if named else "", children, parent))
    return nodes


def check_scope(ast: str, scope: ReadScope, database: str) -> None:
    """Raise QueryRefused unless a scoped reader's statement names only its role's tables."""
    nodes = _nodes(ast)
    if not nodes or nodes[0].kind != "SelectWithUnionQuery":
        raise QueryRefused("only SELECT statements are allowed for this role")
    for i, node in enumerate(nodes):
        if node.kind == "TableIdentifier" or _in_right_side(nodes, i):
            _check_table(node.name, scope, database)
        elif node.kind == "Function" and node.name.lower().startswith(_BY_NAME):
            raise QueryRefused(f"function {node.name}() is not allowed for this role")


def _in_right_side(nodes: list[_Node], i: int) -> bool:
    """An Identifier that is the second argument of IN names a table (`x IN t`)."""
    node = nodes[i]
    if node.kind != "Identifier" or node.parent < 0:
        return False
    arguments = nodes[node.parent]
    if arguments.kind != "ExpressionList" or arguments.parent < 0:
        return False
    function = nodes[arguments.parent]
    siblings = [j for j, n in enumerate(nodes) if n.parent == node.parent]
    return function.kind == "Function" and function.name.lower() in IN_FUNCTIONS and siblings.index(i) == 1


def _check_table(name: str, scope: ReadScope, database: str) -> None:
    db, _, table = name.rpartition(".")
    if (db and db != database) or table not in scope.tables:
        allowed = ", ".join(sorted(scope.tables))
        raise QueryRefused(f"table {name} is not readable for this role; readable: {allowed} (in {database})")


def check_read(ast: str) -> None:
    """Raise QueryRefused unless the `EXPLAIN AST` output is an allowed read."""
    nodes = _nodes(ast)
    if not nodes or not nodes[0].kind.startswith(READ_ROOTS):
        found = nodes[0].kind if nodes else "nothing"
        raise QueryRefused(f"only read statements (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN) are allowed, got {found}")
    parents: list[_Node] = []
    for node in nodes:
        del parents[node.depth:]
        parent = parents[-1] if parents else None
        _check_node(node, parent)
        parents.append(node)


def _check_node(node: _Node, parent: _Node | None) -> None:
    if node.kind == "Set":
        raise QueryRefused("a SETTINGS clause is not allowed: read limits come from the gateway's config")
    if node.kind == "SelectWithUnionQuery" and node.children > 1:
        raise QueryRefused("FORMAT, INTO OUTFILE and SETTINGS clauses are not allowed (the format is a request field)")
    if node.kind != "Function":
        return
    name = node.name.lower()
    if parent is not None and parent.kind == "TableExpression":
        if name not in TABLE_FUNCTIONS:
            raise QueryRefused(f"table function {node.name}() is not allowed; allowed: {', '.join(sorted(TABLE_FUNCTIONS))}")
    elif name in HOST_FUNCTIONS:
        raise QueryRefused(f"function {node.name}() reads the host and is not allowed")


def read_settings(limits: ReadLimits, marker: str, filters: str = "") -> str:
    """The SETTINGS clause every read runs with; readonly last, so nothing after it changes a limit."""
    scoped = f" additional_table_filters = {filters}," if filters else ""
    # metric_points' labels and batch_id are ALIAS columns: SELECT * shows them, as the wide table did.
    return (
        f" SETTINGS max_execution_time = {limits.timeout_s:g}, max_memory_usage = {limits.max_memory_bytes},"
        f" max_result_rows = {limits.max_result_rows}, max_result_bytes = {limits.max_result_bytes},"
        f" result_overflow_mode = 'throw', asterisk_include_alias_columns = 1, log_comment = '{marker}',{scoped}"
        " readonly = 1"
    )


def kill_statement(marker: str) -> str:
    # The KILL itself shows in system.processes with the marker in its text; spare it.
    return f"KILL QUERY WHERE query LIKE '%{marker}%' AND query NOT LIKE 'KILL QUERY%' ASYNC"
