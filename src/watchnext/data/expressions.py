"""Safe arithmetic over columns, for labels and features such as ``log1p(play_time_ms / 1000)``.

Only names (columns), numbers, arithmetic, comparisons and a short list of NumPy functions are
allowed, so a config file can never run arbitrary code. ``nan`` is the one named constant: an
absent value, e.g. ``where(duration_ms > 0, play_time_ms / duration_ms, nan)``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

import numpy as np

FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "log1p": np.log1p, "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs,
    "minimum": np.minimum, "maximum": np.maximum, "clip": np.clip, "where": np.where,
}
CONSTANTS = {"nan": np.nan}
_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod,
}
_COMPARE = {
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


class ExpressionError(ValueError):
    """The expression uses something outside the allowed grammar."""


def parse(expression: str) -> ast.expr:
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse expression {expression!r}: {exc.msg}") from exc
    _check(tree, expression)
    return tree


def columns(expression: str) -> set[str]:
    """The column names an expression reads."""
    tree = parse(expression)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - called - set(CONSTANTS)


def evaluate(expression: str, lookup: Callable[[str], np.ndarray]) -> np.ndarray:
    """Evaluate over float arrays; ``lookup(name)`` returns a column."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(_eval(parse(expression), lookup), dtype=np.float64)


def _check(node: ast.AST, expression: str) -> None:
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name,
               ast.Constant, ast.Load, ast.USub, ast.UAdd, *_BINARY, *_COMPARE)
    for child in ast.walk(node):
        if not isinstance(child, allowed):
            raise ExpressionError(f"{expression!r}: {type(child).__name__} is not allowed")
        if isinstance(child, ast.Call):
            if not isinstance(child.func, ast.Name) or child.func.id not in FUNCTIONS:
                raise ExpressionError(
                    f"{expression!r}: unknown function; allowed: {', '.join(sorted(FUNCTIONS))}")
            if child.keywords:
                raise ExpressionError(f"{expression!r}: keyword arguments are not allowed")
        if isinstance(child, ast.Constant) and not isinstance(child.value, int | float):
            raise ExpressionError(f"{expression!r}: only numeric constants are allowed")


def _eval(node: ast.expr, lookup: Callable[[str], np.ndarray]):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return CONSTANTS[node.id] if node.id in CONSTANTS else lookup(node.id)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, lookup)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_eval(node.left, lookup), _eval(node.right, lookup))
    if isinstance(node, ast.Compare):
        result, left = True, _eval(node.left, lookup)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, lookup)
            result = np.logical_and(result, _COMPARE[type(op)](left, right))
            left = right
        return np.asarray(result, dtype=np.float64)
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return FUNCTIONS[node.func.id](*(_eval(a, lookup) for a in node.args))
