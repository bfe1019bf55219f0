"""Persistence: SQLAlchemy 2.0 asyncio (PostgreSQL through psycopg 3, or a SQLite file)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, Text, select, text, update
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Agent(Base):
    __tablename__ = "demo_agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(64))
    instructions: Mapped[str] = mapped_column(Text, default="")
    executions: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "model": self.model,
            "instructions": self.instructions,
            "executions": self.executions,
            "created_at": _utc(self.created_at).isoformat() if self.created_at else None,
        }


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns; every value stored
    # here is UTC, so say so instead of serialising two formats.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def make_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: handlers serialise the ORM object after its session closed, and
    # an expired attribute would need a lazy load that asyncio cannot do implicitly.
    return async_sessionmaker(engine, expire_on_commit=False)


def make_engine(url: str) -> AsyncEngine:
    # pool_pre_ping: the demo database may restart under docker compose; a stale pooled
    # connection would otherwise surface as a 500 that has nothing to do with the demo.
    kwargs: dict[str, object] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # SQLite serialises writers; a generous busy timeout keeps concurrent load-generator
        # writes from failing with "database is locked".
        kwargs["connect_args"] = {"timeout": 15}
    return create_async_engine(url, **kwargs)


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


class AgentRepository:
    """Tenant-scoped data access: a tenant never sees another tenant's agents."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def list(self, tenant_id: str, limit: int, offset: int) -> list[Agent]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Agent)
                .where(Agent.tenant_id == tenant_id)
                .order_by(Agent.id)
                .limit(limit)
                .offset(offset)
            )
            return list(rows)

    async def get(self, tenant_id: str, agent_id: int) -> Agent | None:
        async with self._sessions() as session:
            agent = await session.get(Agent, agent_id)
            return agent if agent is not None and agent.tenant_id == tenant_id else None

    async def create(self, tenant_id: str, name: str, model: str, instructions: str) -> Agent:
        async with self._sessions.begin() as session:
            agent = Agent(
                tenant_id=tenant_id,
                name=name,
                model=model,
                instructions=instructions,
                executions=0,
                created_at=datetime.now(UTC),
            )
            session.add(agent)
        return agent

    async def update(self, tenant_id: str, agent_id: int, changes: dict[str, str]) -> Agent | None:
        async with self._sessions.begin() as session:
            agent = await session.get(Agent, agent_id)
            if agent is None or agent.tenant_id != tenant_id:
                return None
            for key, value in changes.items():
                setattr(agent, key, value)
        return agent

    async def delete(self, tenant_id: str, agent_id: int) -> bool:
        async with self._sessions.begin() as session:
            agent = await session.get(Agent, agent_id)
            if agent is None or agent.tenant_id != tenant_id:
                return False
            await session.delete(agent)
        return True

    async def record_execution(self, agent_id: int) -> None:
        # An UPDATE ... SET executions = executions + 1 rather than read-modify-write: many
        # executions of one agent run concurrently.
        async with self._sessions.begin() as session:
            await session.execute(
                update(Agent).where(Agent.id == agent_id).values(executions=Agent.executions + 1)
            )
