"""GPU slots: which GPUs each pool process of a machine may use, for its whole life.

With ``num_gpus`` per run, the GPUs a machine was given (those Slurm gave the job, else
basecfg ``gpu_ids``, else ``CUDA_VISIBLE_DEVICES`` as the user set it) are cut into slots of
``num_gpus`` GPUs each (a fraction such as 0.5 puts ``1 / num_gpus`` slots on each GPU,
spread over the GPUs first). Each pool process is given one slot's ``CUDA_VISIBLE_DEVICES``
before it loads the workflow, and keeps it: CUDA reads the variable once per process, so a
process can never move to other GPUs, and two runs share a GPU only when fractions were
asked for.
"""

from __future__ import annotations

import math
import os

from dagrun.config import Settings
from dagrun.errors import ConfigError


def visible_gpus(settings: Settings) -> tuple[str, ...]:
    """The GPUs this machine may use: inside a Slurm job that was given GPUs, the ones Slurm
    gave it (``CUDA_VISIBLE_DEVICES``: other jobs use the node's other GPUs, whatever basecfg
    says); else basecfg ``gpu_ids``; else ``CUDA_VISIBLE_DEVICES``."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and os.environ.get("SLURM_JOB_ID"):
        return _devices(env)
    if settings.gpu_ids is not None:
        return settings.gpu_ids
    return _devices(env or "")


def _devices(env: str) -> tuple[str, ...]:
    return tuple(g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1")


def slots(settings: Settings, runs_at_once: int) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` of each pool process (``None``: inherited unchanged), one
    per run executed at once; fewer than ``runs_at_once`` when the GPUs run out."""
    if not settings.num_gpus:
        return [None] * runs_at_once
    gpus = visible_gpus(settings)
    per_run = settings.num_gpus
    if not gpus:
        raise ConfigError(f"basecfg['num_gpus'] = {per_run:g} per run, but no GPUs are "
                          "known here: set basecfg['gpu_ids'] (e.g. [0, 1]) or "
                          "CUDA_VISIBLE_DEVICES")
    groups: list[tuple[str, ...]]
    if per_run < 1:
        share = math.floor(1 / per_run + 1e-9)
        groups = [(g,) for _ in range(share) for g in gpus]
    else:
        if per_run != int(per_run):
            raise ConfigError(f"basecfg['num_gpus'] must be a whole number above 1 (or a "
                              f"fraction below 1), got {per_run:g}")
        size = int(per_run)
        groups = [gpus[i:i + size] for i in range(0, len(gpus) - size + 1, size)]
        if not groups:
            raise ConfigError(f"basecfg['num_gpus'] = {size} per run, but only "
                              f"{len(gpus)} GPU(s) are given here ({', '.join(gpus)})")
    cudas: list[str | None] = [",".join(g) for g in groups]
    return cudas[:runs_at_once]
