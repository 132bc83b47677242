"""The TUI's screens: dashboard, recipe, samples/eval, a study's runs, and the quit and stop dialogs."""
