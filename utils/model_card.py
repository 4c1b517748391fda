"""A checkpoint's inference defaults: ``<weights without extension>.json`` beside it (like a model card).

    {"inference": {"exposure": 0.35, "highlight_guard": 0.5}, "about": "free text"}

``lowlight_test.py`` and ``hubconf.dce_net`` use them when no brightness flag is given
(:func:`brightness_control`), and say so; ``--exposure off`` gives the network's own output. The keys are
:meth:`network.enhancer.Enhancer.set_curve_control`'s own arguments: ``set_curve_control(**defaults)``. A checkpoint without such a file (every official one)
runs as it is, so the reference numerics stay exact. Only the keys of :data:`INFERENCE_KEYS` are accepted.
"""
from __future__ import annotations

import json
import os

from utils.errors import UserError

INFERENCE_KEYS = {"exposure": "mean output brightness, as --exposure",
                  "highlight_guard": "percentage points, as --highlight_guard"}


def card_path(weights: str) -> str:
    """Where the card of ``weights`` would be: the same path with ``.json`` for its extension."""
    return os.path.splitext(weights)[0] + ".json"


def inference_defaults(weights: str) -> dict[str, float]:
    """The ``inference`` section of the card of ``weights`` ({} without a card); a card that cannot be read,
    or holds an unknown key or a non-number, is a :class:`UserError` naming it."""
    path = card_path(weights)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            card = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read the checkpoint's card ({str(e)[:120]}); fix or remove it") from None
    section = card.get("inference", {}) if isinstance(card, dict) else None
    if not isinstance(section, dict):
        raise UserError(f"{path}: 'inference' must be an object of {', '.join(INFERENCE_KEYS)}; fix or remove it")
    for key, value in section.items():
        if key not in INFERENCE_KEYS:
            raise UserError(f"{path}: unknown inference default {key!r} (known: {', '.join(INFERENCE_KEYS)}); "
                            f"fix or remove it")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{path}: inference default {key!r} must be a number ({INFERENCE_KEYS[key]})")
    return {k: float(v) for k, v in section.items()}


def brightness_control(weights: str | None, exposure: float | str | None, strength: float,
                       highlight_guard: float | None) -> tuple[dict[str, float | None], dict[str, float]]:
    """``(kwargs of set_curve_control, the card's defaults used)`` for the brightness flags given for ``weights``
    (None: no checkpoint file): ``exposure="off"`` is the network's own output (with a guard, an error); with
    neither ``exposure`` nor ``strength`` given the card fills both, a guard given by hand winning over its."""
    if exposure == "off":
        if highlight_guard is not None:
            raise UserError("--highlight_guard limits --exposure, and --exposure off turns it off: drop one of them")
        return {"exposure": None, "highlight_guard": None}, {}
    card = inference_defaults(weights) if exposure is None and strength == 1.0 and weights is not None else {}
    if "exposure" not in card:
        return {"exposure": exposure, "highlight_guard": highlight_guard}, {}
    guard = card.get("highlight_guard") if highlight_guard is None else highlight_guard
    return {"exposure": card["exposure"], "highlight_guard": guard}, card


def describe(defaults: dict[str, float]) -> str:
    """The defaults as the flags that give them, e.g. ``--exposure 0.35 --highlight_guard 0.5``."""
    return " ".join(f"--{k} {v:g}" for k, v in defaults.items())
