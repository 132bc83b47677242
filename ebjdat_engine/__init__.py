"""ebjdat's engine: recipes, data, models, samplers, methods, training and evaluation.

The engine knows nothing of terminals (no import of textual); front ends read the run
directory it writes.
"""

__version__ = "0.1.0"
