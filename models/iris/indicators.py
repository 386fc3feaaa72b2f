"""iris's own model-quality indicators: plain functions, declared under ``indicators:`` in model.yaml
(``type: custom``). ``iris__monitor`` runs them beside the built-in ones; each gets the window's frames
(``inputs.current``, ``.reference``, ``.previous``, ``.labels``, ``.other``: pandas) and returns a
number or a dict (see indicators/custom.py)."""

from __future__ import annotations


def petal_ratio_shift(inputs):
    """How far the window's mean petal length/width ratio moved from the training data's, relative
    (0.1 = 10%): the petals' shape, which a shift of one measurement alone would not show."""
    reference = inputs.reference
    if reference is None or reference.empty:
        return {"value": None, "message": "no training reference to compare the petals with"}
    current = inputs.current
    now = (current["petal_length_cm"] / current["petal_width_cm"]).mean()
    then = (reference["petal_length_cm"] / reference["petal_width_cm"]).mean()
    return {"value": float(abs(now / then - 1.0)), "details": {"window": float(now), "training": float(then)}}
