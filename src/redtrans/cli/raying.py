"""The ``--ray`` options shared by translate, sample and bench (Ray itself is imported only when a job runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from redtrans.scale.raydata import RayOptions

RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Run as a Ray Data job (the ray extra; docs/scale.md): `local` starts a Ray on this "
        "machine for the job, `auto` joins the cluster this machine is in, or host:6379 / ray://host:10001.",
    ),
]
RayActorsOpt = Annotated[
    int | None,
    typer.Option(help="With --ray: actors in the pool (default: as many as fit in 90% of the cluster's CPUs)."),
]
RayCpusOpt = Annotated[
    float | None,
    typer.Option(help="With --ray: CPUs per actor (default 1; llamacpp's n_threads in the throughput mode)."),
]
RayGpusOpt = Annotated[float, typer.Option(help="With --ray: GPUs per actor (the hf engine on GPU nodes).")]


def ray_options(address: str, actors: int | None, cpus: float | None, gpus: float) -> RayOptions:
    from redtrans.scale.raydata import RayOptions

    return RayOptions(address=address, actors=actors, cpus=cpus, gpus=gpus)
