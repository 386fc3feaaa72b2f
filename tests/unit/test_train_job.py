"""The training child's ``sys.path``: the model directory last (``train_job.platform_first``)."""

from __future__ import annotations

from pushbutton.train_job import platform_first


def test_the_model_directory_goes_last_so_it_shadows_no_platform_package(tmp_path) -> None:
    here = str(tmp_path / "iris")
    path = [here, "/venv/lib/python3.11", "", "/repo", here + "/"]
    assert platform_first(path, here) == ["/venv/lib/python3.11", "/repo", here]
