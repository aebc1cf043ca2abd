"""A constant-folding pass for torch.fx graphs, its fx-conform plugin and its test."""
