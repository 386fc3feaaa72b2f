"""Model-quality indicators (drift, stability, skew, label metrics, custom Python).

Arrives with the monitoring issue: one fixed result shape per indicator and a registry with stable
ids. Specs already declare them (``indicators:`` in model.yaml, validated by ``pushbutton.spec``).
"""
