"""Several hosts on one dataset, on JAX's distributed runtime (`jax.distributed`).

Every process runs the same command. `initialize` joins the job (coordinator address, process
count and id from the arguments, or from SLURM/Open MPI environment variables through
`jax.distributed.initialize()`'s own cluster detection). The work is split by the GLOBAL device
mesh: job i goes to global device i mod D, so to that device's process; each process then trains
its jobs on its local devices (`fit_many` shards its shape axis over them). The shapes never
communicate, so processes do not run in lockstep: one that finishes early waits only at the end,
where `gather` brings every process's small results to process 0 through the coordinator's
key-value store and a global barrier (a real cross-process collective; gloo on CPU) closes the run.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax

_GATHER_TIMEOUT_MS = 3_600_000
"""One wait for another process's results; repeated while that process is alive."""


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """Join a multi-process job when one is asked for; returns (process id, process count).

    With no arguments and no cluster environment (SLURM_NTASKS > 1, OMPI_COMM_WORLD_SIZE > 1)
    nothing happens and this is process 0 of 1.
    """
    in_cluster = int(os.environ.get("SLURM_NTASKS", "1")) > 1 or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    if coordinator or num_processes or process_id is not None or in_cluster:
        if not _initialized():
            jax.distributed.initialize(coordinator, num_processes, process_id)
    return jax.process_index(), jax.process_count()


def _initialized() -> bool:
    from jax._src import distributed

    return distributed.global_state.client is not None


def owned(count: int, devices: Sequence[jax.Device] | None = None) -> list[int]:
    """The job indices (of `count`) this process runs: job i -> global device i mod D."""
    devices = list(devices) if devices is not None else jax.devices()
    me = jax.process_index()
    return [i for i in range(count) if devices[i % len(devices)].process_index == me]


def gather(tag: str, payload: Any) -> list[Any] | None:
    """Every process's JSON-able payload, in process order, on process 0 (None elsewhere).

    Then a global barrier, so no process leaves (and shuts the runtime down) before process 0
    has everything.
    """
    if jax.process_count() == 1:
        return [payload]
    from jax._src import distributed
    from jax.experimental import multihost_utils

    client = distributed.global_state.client
    me = jax.process_index()
    client.key_value_set(f"diffcd/{tag}/{me}", json.dumps(payload))
    gathered = None
    if me == 0:
        gathered = [json.loads(_wait_for(client, f"diffcd/{tag}/{p}")) for p in range(jax.process_count())]
    multihost_utils.sync_global_devices(f"diffcd/{tag}/done")
    return gathered


def _wait_for(client, key: str) -> str:
    # Another process may fit for hours: wait in rounds. A dead process ends the whole job
    # through the coordinator's heartbeats, not here.
    while True:
        try:
            return client.blocking_key_value_get(key, _GATHER_TIMEOUT_MS)
        except Exception as error:  # jaxlib's runtime error type is not public
            if "DEADLINE_EXCEEDED" not in str(error):
                raise
