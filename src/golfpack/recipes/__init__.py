"""Seed recipes: the five competitor systems of ../shared/seeds as ready-to-run golfpack configs.

    golfpack recipe list | show NAME | run NAME [--scale tiny|full] ...

Each recipe module (pr596, pr1683, pr2163, pr1123, pr595) holds one `Recipe` (golfpack.recipes.base).
"""
from __future__ import annotations

import importlib

from golfpack.errors import GolfpackError

NAMES = ("pr596", "pr1683", "pr2163", "pr1123", "pr595")


def get(name: str):
    """The Recipe called `name` (one clear error for an unknown one)."""
    if name not in NAMES:
        raise GolfpackError(f"unknown recipe {name!r} (known: {', '.join(NAMES)})")
    return importlib.import_module(f"golfpack.recipes.{name}").RECIPE


def all_recipes() -> list:
    return [get(n) for n in NAMES]
