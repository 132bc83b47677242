"""The TUI's screens: dashboard, recipe, samples/eval, and the quit and stop dialogs."""
