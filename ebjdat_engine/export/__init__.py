"""Exports of a run directory to other tools' formats (TensorBoard). Readers of the run
directory only: nothing here writes into a run."""
