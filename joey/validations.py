"""Validation expressions (spec `validations:`), parsed once and evaluated vectorised on step outputs.

Grammar: a Python expression over `out.<output>` (and `out.<output>[i]` for one column of a wide output)
with numbers, arithmetic (+ - * /), comparisons, `and`, `or`, `not`. Anything else is refused at spec load,
so the engine never evaluates arbitrary code. An output with one value per row compares as a column; a wider
output is true for a row when any of its values is.
"""
from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from itertools import pairwise

import numpy as np

_CMP = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class ValidationSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Validation:
    name: str
    expression: str
    tree: ast.Expression
    outputs: frozenset[str]  # the output names it reads

    def evaluate(self, outputs: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
        """Boolean array of length `rows`: True where the validation flags the row."""
        value = _eval(self.tree.body, outputs)
        arr = np.asarray(value)
        if arr.ndim == 0:
            return np.full(rows, bool(arr))
        arr = arr.reshape(rows, -1).astype(bool)
        return np.asarray(arr.any(axis=1))


def parse(name: str, expression: str) -> Validation:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as e:
        raise ValidationSyntaxError(f"not an expression: {e.msg}") from None
    outputs: set[str] = set()
    _check(tree.body, outputs)
    if not outputs:
        raise ValidationSyntaxError("the expression reads no output (out.<name>)")
    return Validation(name, expression, tree, frozenset(outputs))


def _check(node: ast.AST, outputs: set[str]) -> None:
    match node:
        case ast.Constant(value=v) if isinstance(v, (int, float)) and not isinstance(v, bool):
            return
        case ast.Attribute(value=ast.Name(id="out"), attr=attr):
            outputs.add(attr)
        case ast.Subscript(value=ast.Attribute(value=ast.Name(id="out"), attr=attr),
                           slice=ast.Constant(value=int())):
            outputs.add(attr)
        case ast.Compare(left=left, ops=ops, comparators=comps) if all(type(o) in _CMP for o in ops):
            for n in (left, *comps):
                _check(n, outputs)
        case ast.BoolOp(values=values):
            for n in values:
                _check(n, outputs)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BIN:
            _check(left, outputs)
            _check(right, outputs)
        case ast.UnaryOp(op=ast.Not() | ast.USub(), operand=operand):
            _check(operand, outputs)
        case _:
            raise ValidationSyntaxError(
                f"unsupported element {ast.unparse(node)!r}: use out.<output>, numbers, + - * /, comparisons, "
                "and/or/not")


def _column(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim >= 2 and int(np.prod(arr.shape[1:])) == 1:
        return arr.reshape(arr.shape[0])
    return arr.reshape(arr.shape[0], -1) if arr.ndim >= 2 else arr


def _eval(node: ast.AST, outputs: Mapping[str, np.ndarray]) -> np.ndarray | int | float:
    match node:
        case ast.Constant(value=int(v) | float(v)):   # _check admits no other constant
            return v
        case ast.Attribute(attr=attr):
            return _column(outputs[attr])
        case ast.Subscript(value=ast.Attribute(attr=attr), slice=ast.Constant(value=int(i))):
            arr = np.asarray(outputs[attr])
            return arr.reshape(arr.shape[0], -1)[:, i]
        case ast.Compare(left=left, ops=ops, comparators=comps):
            # a < b < c is (a < b) and (b < c), each operand evaluated once
            operands = [_eval(n, outputs) for n in (left, *comps)]
            parts = [_CMP[type(op)](a, b) for op, (a, b) in zip(ops, pairwise(operands), strict=True)]
            return np.asarray(reduce(np.logical_and, parts))
        case ast.BoolOp(op=op, values=values):
            combine = np.logical_and if isinstance(op, ast.And) else np.logical_or
            return np.asarray(reduce(combine, [_eval(v, outputs) for v in values]))
        case ast.BinOp(left=left, op=op, right=right):
            return np.asarray(_BIN[type(op)](_eval(left, outputs), _eval(right, outputs)))
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return np.logical_not(_eval(operand, outputs))
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_eval(operand, outputs)
    raise ValidationSyntaxError(f"unsupported element {ast.unparse(node)!r}")
