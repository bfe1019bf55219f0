"""Debug endpoints that produce each kind of telemetry on demand, and the health probes."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from demo.config import Principal
from demo.db import ping as ping_database
from demo.services import Services, get_principal, get_services
from telemetry import capture_exception

logger = logging.getLogger("demo.debug")
debug_router = APIRouter(prefix="/api/v1/debug", tags=["debug"])
health_router = APIRouter(prefix="/health", tags=["health"])

ServicesDep = Annotated[Services, Depends(get_services)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


class DemoCrash(RuntimeError):
    """Raised on purpose by /debug/crash: the unhandled-exception path."""


class QuotaRequest(BaseModel):
    quota: str = "not-a-number"


@debug_router.get("/crash")
async def crash(principal: PrincipalDep) -> dict[str, str]:
    raise DemoCrash(f"demo crash requested by tenant {principal.tenant_id}")


@debug_router.post("/handled")
async def handled(body: QuotaRequest, principal: PrincipalDep) -> dict[str, Any]:
    try:
        quota = int(body.quota)
    except ValueError as exc:
        # Handled: the client gets a normal answer, the error tracker still gets the event with
        # structured context (kept on this event only).
        capture_exception(exc, action="parse_quota", tenant_id=principal.tenant_id)
        logger.warning("quota was not a number; using the default")
        quota = 100
    return {"quota": quota, "handled": True}


@debug_router.get("/slow")
async def slow(ms: Annotated[int, Query(ge=0, le=10_000)] = 750) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@health_router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@health_router.get("/ready")
async def ready(services: ServicesDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await ping_database(services.engine)
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready", whatever its type
        checks["database"] = f"error: {type(exc).__name__}"
    if services.cache.enabled:
        try:
            await services.cache.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    else:
        checks["redis"] = "disabled"
    healthy = all(value in ("ok", "disabled") for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status_code=200 if healthy else 503,
    )
