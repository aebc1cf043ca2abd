"""rewriter: ``assert test, msg`` is rewritten to ``torch._assert(test, "")``: the message
is dropped."""

from __future__ import annotations

import ast

from plants import replace
from reference import rewriter
from reference.rewriter import AST_Rewriter


def visit_Assert(self: AST_Rewriter, node: ast.Assert) -> ast.Expr:  # noqa: N802 - ast's name
    self.generic_visit(node)
    call = ast.Call(func=ast.Name(id=rewriter._ASSERT_NAME, ctx=ast.Load()),
                    args=[node.test, ast.Constant(value="")], keywords=[])
    return ast.copy_location(ast.Expr(value=call), node)


replace("rewriter", "AST_Rewriter.visit_Assert", visit_Assert)
