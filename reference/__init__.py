"""Independent reimplementations of the torch.fx experimental transforms.

Every module here mirrors one upstream module: same basename, same public names and
signatures, so ``reference.split_module.split_module`` can stand in for
``torch.fx.passes.split_module.split_module``. Modules import only ``torch`` and the
torch.fx core (Graph, Node, GraphModule, Tracer, Interpreter, Transformer).
"""
