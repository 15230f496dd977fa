"""The one way every Whistle process (API, worker, CLI, audit) connects to Temporal: the
configured address and namespace, and the data converter they must all share (pydantic
models in every payload)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from whistle.settings import Settings


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client on `settings`' Temporal (`runtime`: the worker's, for its metrics)."""
    return await Client.connect(settings.temporal_address,
                                namespace=settings.temporal_namespace,
                                data_converter=pydantic_data_converter, runtime=runtime)
