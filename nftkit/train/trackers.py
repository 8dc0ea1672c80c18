"""Experiment trackers through accelerate's tracker API (TensorBoard, W&B, MLflow).

``--log-with tensorboard|wandb|mlflow|all`` (comma-separated allowed). Everything stays under
the run folder and offline unless the user says otherwise: TensorBoard event files in
``OUTPUT/trackers/``, W&B in offline mode (``WANDB_MODE=offline`` unless set) under
``OUTPUT/trackers/wandb``, MLflow in a file store ``OUTPUT/mlruns`` (unless
``MLFLOW_TRACKING_URI`` is set).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from nftkit.errors import UsageError

TRACKERS = ("tensorboard", "wandb", "mlflow")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
PROJECT = "nftkit"


def parse_log_with(text: str | None) -> list[str]:
    """``"tensorboard,wandb"`` / ``"all"`` as tracker names (checked); None or "" -> []."""
    if not text:
        return []
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if "all" in names:
        return list(TRACKERS)
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise UsageError(f"unknown --log-with '{bad[0]}'; choose {', '.join(TRACKERS)} or all")
    return list(dict.fromkeys(names))


def check_installed(names: list[str]) -> None:
    """Fail with the ``pip install`` to run when a chosen tracker's package is missing."""
    missing = [_PACKAGES[n] for n in names if importlib.util.find_spec(_PACKAGES[n]) is None]
    if missing:
        raise UsageError(
            f"--log-with {','.join(names)} needs {' '.join(missing)}: run "
            f"pip install {' '.join(missing)} (or pip install 'nftkit[trackers]')"
        )


def flat_config(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config as flat ``a/b`` keys with int/float/str/bool values (tracker hparams)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif value is not None:
            out[name] = str(value)
    return out


class Trackers:
    """accelerate trackers for one training run (no-op with no names)."""

    def __init__(
        self, names: list[str], output: Path, run_name: str, config: dict[str, Any]
    ) -> None:
        self.names = names
        self.accelerator: Any = None
        if not names:
            return
        check_installed(names)
        from accelerate import Accelerator

        folder = Path(output) / "trackers"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("MLFLOW_TRACKING_URI", (Path(output) / "mlruns").resolve().as_uri())
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # offline, under the run
        self.accelerator = Accelerator(log_with=names, project_dir=str(folder), cpu=True)
        init = {
            "wandb": {"dir": str(folder), "name": run_name},
            "mlflow": {"run_name": run_name},
            "tensorboard": {},
        }
        self.accelerator.init_trackers(
            PROJECT, config=flat_config(config), init_kwargs={n: init[n] for n in names}
        )

    def log(self, values: dict[str, Any], step: int) -> None:
        """Log the numeric entries of ``values`` at ``step``."""
        if self.accelerator is None:
            return
        scalars = {
            k: float(v)
            for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if scalars:
            self.accelerator.log(scalars, step=step)

    def log_images(self, name: str, images: list[Any], step: int) -> None:
        """Log a sample grid (list of PIL images, side by side) where the tracker supports it."""
        if self.accelerator is None or not images:
            return
        grid = np.concatenate([np.asarray(im.convert("RGB")) for im in images], axis=1)
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({name: grid}, step=step, dataformats="HWC")
            elif tracker.name == "wandb":
                tracker.log_images({name: [grid]}, step=step)
            elif tracker.name == "mlflow":
                import mlflow

                mlflow.log_image(grid, artifact_file=f"{name}/step{step:07d}.png")

    def close(self) -> None:
        """Flush and close every tracker."""
        if self.accelerator is not None:
            self.accelerator.end_training()
            self.accelerator = None
