"""Parameter strategies per transform family: ``(graph_module) -> SearchStrategy[dict]``."""
