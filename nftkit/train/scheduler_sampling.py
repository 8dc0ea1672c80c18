"""CFG-free sampling with any diffusers flow-matching scheduler.

nftkit's velocity functions take t in [0, 1] (t = sigma, t = 1 is noise); diffusers'
flow-matching schedulers count timesteps as ``sigma * num_train_timesteps``. This module bridges
the two so that e.g. ``FlowMatchEulerDiscreteScheduler`` or ``FlowMatchHeunDiscreteScheduler``
(with their own shift and sigma schedule) can drive any nftkit policy.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from nftkit.train.sampling import VelocityFn


@torch.no_grad()
def scheduler_sample(
    velocity_fn: VelocityFn,
    x_T: Tensor,
    scheduler: Any,
    num_steps: int,
    **set_timesteps_kwargs: Any,
) -> Tensor:
    """Integrate from noise ``x_T`` with ``scheduler`` (a copy; the original is left untouched).

    ``set_timesteps_kwargs`` go to ``scheduler.set_timesteps`` (e.g. ``mu`` for dynamic
    shifting, or ``sigmas``).
    """
    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(num_steps, device=x_T.device, **set_timesteps_kwargs)
    scale = float(sched.config.num_train_timesteps)
    x = x_T
    for timestep in sched.timesteps:
        t = (timestep.float() / scale).expand(x.shape[0]).to(x.device)
        v = velocity_fn(x, t)
        x = sched.step(v, timestep, x, return_dict=False)[0].to(x_T.dtype)
    return x
