"""Case sources and hypothesis strategies for fx-conform (imports torch and hypothesis only)."""
