"""Examples of checking a pass of your own with fx-conform."""
