"""Operator actions: requeue a job, pause and resume intake (token required).

Each needs ``Authorization: Bearer <token>``, the token being the value of
the environment variable that ``web.operator_token_env`` names (see
`web.security`), and is rate limited per client. They are the state
functions the CLI uses (the queue's ``requeue``, which on ``queue.backend:
redis`` also takes the job out of the dead-letter stream; `state.intake`), on
a writable connection opened for the action only.
"""

from __future__ import annotations

from contextlib import closing
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request
from pydantic import BaseModel, Field

from dsa110_contimg.state.db import open_db
from dsa110_contimg.state.intake import set_intake_hold
from dsa110_contimg.state.queue import open_queue
from dsa110_contimg.web.api._common import Context, require_job
from dsa110_contimg.web.api.pipeline import intake_status, job_body
from dsa110_contimg.web.errors import UnavailableError
from dsa110_contimg.web.models import ActionResult
from dsa110_contimg.web.security import check_operator_token

__all__ = ["router"]


def operator(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="Bearer <operator token>")
    ] = None,
) -> str:
    """Check the rate limit and the operator token; return the client address."""
    ctx = request.app.state.context
    request.app.state.rate_limiter.check(request)
    check_operator_token(
        authorization,
        env_name=ctx.config.web.operator_token_env,
        environ=ctx.environ,
    )
    return request.client.host if request.client else "unknown"


Operator = Annotated[str, Depends(operator)]

router = APIRouter(prefix="/actions", tags=["actions"])


class Reason(BaseModel):
    """Why the operator acts (stored in the job events / the flag)."""

    reason: str = Field("", max_length=500, description="Free text, at most 500 chars.")


def _writable(ctx):
    if not ctx.db_path.is_file():
        msg = f"state database {ctx.db_path} does not exist yet; nothing to change"
        raise UnavailableError(msg)
    return closing(open_db(ctx.db_path))


@router.post("/requeue/{job_id}", response_model=ActionResult)
def requeue(
    ctx: Context,
    job_id: int,
    client: Operator,
    body: Annotated[Reason | None, Body()] = None,
) -> dict[str, object]:
    """Send a failed, quarantined or done job back to pending (409 if running)."""
    reason = (body.reason if body else "") or "no reason given"
    with _writable(ctx) as conn, closing(open_queue(ctx.config.queue, conn)) as q:
        require_job(conn, job_id)
        job = q.requeue(
            job_id,
            now=ctx.clock(),
            reason=f"requeued by an operator (API, {client}): {reason}",
            worker=f"api:{client}",
        )
    return {
        "action": "requeue",
        "ok": True,
        "detail": f"job {job.id} ({job.kind} {job.key}) requeued",
        "job": job_body(job),
    }


def _set_hold(ctx, client: str, *, paused: bool, reason: str) -> dict[str, object]:
    with _writable(ctx) as conn:
        set_intake_hold(
            conn, paused=paused, reason=reason, now=ctx.clock(), by=f"api:{client}"
        )
        status = intake_status(conn)
    return {
        "action": "pause_intake" if paused else "resume_intake",
        "ok": True,
        "detail": (
            "intake held: the watcher enqueues no new group and no conversion "
            "starts until resumed (the stream reads it at its next scan)"
            if paused
            else "operator hold released"
        ),
        "intake": status,
    }


@router.post("/intake/pause", response_model=ActionResult)
def pause_intake(
    ctx: Context, client: Operator, body: Annotated[Reason | None, Body()] = None
) -> dict[str, object]:
    """Hold intake (no new groups, no conversions) until resumed."""
    reason = (body.reason if body else "") or "paused by an operator"
    return _set_hold(ctx, client, paused=True, reason=reason)


@router.post("/intake/resume", response_model=ActionResult)
def resume_intake(
    ctx: Context, client: Operator, body: Annotated[Reason | None, Body()] = None
) -> dict[str, object]:
    """Release the operator's hold on intake (the disk guard still applies)."""
    reason = (body.reason if body else "") or "resumed by an operator"
    return _set_hold(ctx, client, paused=False, reason=reason)
