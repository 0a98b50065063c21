"""Pictures: loss curves, the LR finder's curve, attention heatmaps (matplotlib, headless)."""
