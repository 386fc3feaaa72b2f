"""Run a model's predict class on CSV rows inside its serving environment.

Standalone (the serving env has no pushbutton): imports ``module:Class`` from the code directory
the way seldon-core does (code dir as working directory, appended to ``sys.path``; pushbutton's
built-in classes such as ``pushbutton_sklearn:SklearnModel`` come from ``seldon/`` beside this file,
as they do from a microservice's ``PYTHONPATH``), constructs it
with ``model_uri=``, calls ``predict(X, features_names)`` and writes
``{"predictions": [...], "seconds": s}``; on any exception writes
``{"error", "stage": "load"|"predict", "traceback"}`` and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback


def _jsonable(value):
    if hasattr(value, "to_numpy"):  # pandas Series/DataFrame
        value = value.to_numpy()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def run(args: argparse.Namespace) -> dict:
    code_dir = os.path.abspath(args.code_dir)
    os.chdir(code_dir)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    # pushbutton's built-in predict classes, as on a microservice's PYTHONPATH
    sys.path.append(os.path.join(here, "seldon"))
    sys.path.append(code_dir)
    import pandas as pd

    frame = pd.read_csv(args.input)
    X = frame.to_numpy()  # what seldon hands predict(): an array, names separately
    module_name, _, class_name = args.class_ref.replace(":", ".").rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    model = cls(model_uri=args.model_uri)
    started = time.perf_counter()
    args.stage = "predict"
    predictions = _jsonable(model.predict(X, list(frame.columns)))
    return {"predictions": predictions, "seconds": round(time.perf_counter() - started, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--class-ref", required=True, help="module:Class")
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--input", required=True, help="CSV with a header row of feature names")
    parser.add_argument("--output", required=True, help="JSON result file")
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output)
    args.input = os.path.abspath(args.input)
    args.stage = "load"
    code = 0
    try:
        result = run(args)
    except BaseException as exc:  # everything the model can raise, SystemExit included
        result = {
            "error": f"{type(exc).__name__}: {exc}",
            "stage": args.stage,
            "traceback": traceback.format_exc(),
        }
        code = 2
    with open(output, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return code


if __name__ == "__main__":
    sys.exit(main())
