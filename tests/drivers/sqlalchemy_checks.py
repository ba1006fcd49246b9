"""SQLAlchemy 2 ORM through pgsplit, on psycopg 3 and on asyncpg: schema creation, bulk
inserts with RETURNING (insertmanyvalues), relationships with selectinload, updates, rollback
and IntegrityError's SQLSTATE. Prints "ok <check>" per check."""

import asyncio
import os

from sqlalchemy import ForeignKey, String, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload
from sqlalchemy import create_engine

URL = os.environ["PGSPLIT_DRIVER_URL"].split("://", 1)[1]
TAG = os.environ["PGSPLIT_DRIVER_TAG"]


class Base(DeclarativeBase):
    pass


class Lead(Base):
    __tablename__ = f"drv_{TAG}_sa_lead"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    score: Mapped[int] = mapped_column(default=0)
    notes: Mapped[list["Note"]] = relationship(back_populates="lead", cascade="all")


class Note(Base):
    __tablename__ = f"drv_{TAG}_sa_note"
    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey(Lead.id))
    body: Mapped[str]
    lead: Mapped[Lead] = relationship(back_populates="notes")


def ok(name):
    print("ok", name, flush=True)


def sync_checks():
    engine = create_engine(f"postgresql+psycopg://{URL}", pool_size=3, max_overflow=0)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    try:
        with Session(engine) as s:
            leads = [Lead(email=f"l{i}@x", score=i, notes=[Note(body=f"n{i}")]) for i in range(300)]
            s.add_all(leads)
            s.commit()
            assert all(lead.id is not None for lead in leads)  # RETURNING per batch
        with Session(engine) as s:
            got = s.scalars(
                select(Lead).options(selectinload(Lead.notes)).where(Lead.score >= 295).order_by(Lead.score)
            ).all()
            assert [(lead.email, [n.body for n in lead.notes]) for lead in got] == [
                (f"l{i}@x", [f"n{i}"]) for i in range(295, 300)
            ]
            s.execute(update(Lead).where(Lead.score < 10).values(score=Lead.score + 1000))
            s.commit()
            assert s.scalar(select(func.count()).where(Lead.score >= 1000)) == 10
        with Session(engine) as s:
            s.add(Lead(email="l1@x"))
            try:
                s.commit()
                raise AssertionError("duplicate email accepted")
            except IntegrityError as e:
                assert e.orig.sqlstate == "23505", e.orig.sqlstate
                s.rollback()
            assert s.scalar(select(func.count()).select_from(Lead)) == 300
    finally:
        Base.metadata.drop_all(engine)
        engine.dispose()
    ok("orm_psycopg")


async def async_checks():
    engine = create_async_engine(f"postgresql+asyncpg://{URL}", pool_size=3, max_overflow=0)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as s:
            leads = [Lead(email=f"a{i}@x", score=i, notes=[Note(body=f"m{i}")]) for i in range(300)]
            s.add_all(leads)
            await s.commit()
            assert all(lead.id is not None for lead in leads)

        async def reader(k):
            async with AsyncSession(engine) as s:
                got = (
                    await s.scalars(
                        select(Lead).options(selectinload(Lead.notes)).where(Lead.score == k)
                    )
                ).all()
                assert [(lead.email, [n.body for n in lead.notes]) for lead in got] == [
                    (f"a{k}@x", [f"m{k}"])
                ]

        await asyncio.gather(*(reader(k) for k in range(0, 300, 7)))
        async with AsyncSession(engine) as s:
            async with s.begin():
                await s.execute(update(Lead).where(Lead.score < 5).values(score=-1))
            assert await s.scalar(select(func.count()).where(Lead.score == -1)) == 5
            s.add(Lead(email="a1@x"))
            try:
                await s.commit()
                raise AssertionError("duplicate email accepted")
            except IntegrityError as e:
                assert e.orig.sqlstate == "23505", e.orig.sqlstate
                await s.rollback()
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()
    ok("orm_asyncpg")


sync_checks()
asyncio.run(async_checks())
