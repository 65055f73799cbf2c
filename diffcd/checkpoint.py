"""Orbax checkpoints of the training state, to resume a fit where it stopped."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from diffcd.errors import CheckpointError
from diffcd.fit import Fitter, TrainState


def save_train_state(path: str | os.PathLike, state: TrainState) -> Path:
    """Write params, optimiser state and step to an Orbax checkpoint folder (replaced if present)."""
    path = Path(path).absolute()
    tree = {"params": state.params, "opt_state": state.opt_state, "step": np.int64(state.step)}
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, jax.device_get(tree), force=True)
    return path


def restore_train_state(path: str | os.PathLike, fitter: Fitter) -> TrainState:
    """Read a checkpoint written by save_train_state for a fitter of the same configuration."""
    path = Path(path).absolute()
    if not path.is_dir():
        raise CheckpointError(f"{path} is not an Orbax checkpoint folder; pass a run's checkpoint/ folder.")
    target = {"params": fitter.state.params, "opt_state": fitter.state.opt_state, "step": np.int64(0)}
    target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, jax.device_get(target))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            tree = checkpointer.restore(path, target)
    except Exception as error:  # Orbax raises many types for foreign or damaged folders
        raise CheckpointError(
            f"{path} cannot be restored for this configuration ({type(error).__name__}); "
            "resume with the same method, preset and network as the run that wrote it."
        ) from None
    return TrainState(tree["params"], tree["opt_state"], int(tree["step"]))
