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
"""

from __future__ import annotations

from dataclasses import dataclass

from telemetry_gateway.gateway.errors import QueryRefused

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


@dataclass(frozen=True)
class _Node:
    depth: int
    kind: str
    name: str  # a Function's name, else ""
    children: int


def _nodes(ast: str) -> list[_Node]:
    nodes = []
    for line in ast.splitlines():
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        words = line.split()
        children = int(words[-1].rstrip(")")) if len(words) >= 2 and words[-2] == "(children" else 0
        name = words[1] if words[0] == "Function" and len(words) > 1 else ""
        nodes.append(_Node(depth, words[0], name, children))
    return nodes


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


def read_settings(limits: ReadLimits, marker: str) -> str:
    """The SETTINGS clause every read runs with; readonly last, so nothing after it changes a limit."""
    return (
        f" SETTINGS max_execution_time = {limits.timeout_s:g}, max_memory_usage = {limits.max_memory_bytes},"
        f" max_result_rows = {limits.max_result_rows}, max_result_bytes = {limits.max_result_bytes},"
        f" result_overflow_mode = 'throw', log_comment = '{marker}', readonly = 1"
    )


def kill_statement(marker: str) -> str:
    # The KILL itself shows in system.processes with the marker in its text; spare it.
    return f"KILL QUERY WHERE query LIKE '%{marker}%' AND query NOT LIKE 'KILL QUERY%' ASYNC"
