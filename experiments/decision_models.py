"""Tables of one area, kept out of :mod:`experiments.models` so areas can grow apart.

Imported at the bottom of :mod:`experiments.models`, so every table is on the metadata.
"""

from __future__ import annotations
