"""SQLAlchemy tables of an index directory's metadata database.

A *content* is one distinct file body (by hash) with its embedding; its primary key is the
FAISS id. A *file* is a path on disk pointing at a content, so identical files share one vector.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


# Sizes and nanosecond mtimes need 64 bits: SQLite's INTEGER has them, PostgreSQL's needs BIGINT.
# The variant keeps SQLite's column type exactly as migration 0001 always made it.
Int64 = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base whose metadata alembic migrates."""


class Content(Base):
    """One distinct media body of one kind, embedded once; `id` is its FAISS id.

    The key is (hash, kind): identical bytes named song.wav and copy.jpg are two contents, each
    decoded as what its name says, so a bad copy cannot take a good file down with it.
    """

    __tablename__ = "contents"
    # AUTOINCREMENT: a deleted id is never handed out again, so a FAISS id that outlived its
    # row after a crash can never be mistaken for a new content's vector.
    __table_args__ = (Index("ux_contents_hash_kind", "content_hash", "kind", unique=True),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(8), index=True)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    transcript: Mapped[str | None] = mapped_column(Text)
    # Indexed, but not whole: e.g. a recording longer than the encoder hears, or a truncated file.
    warning: Mapped[str | None] = mapped_column(Text)
    # The vector itself, so FAISS can always be rebuilt from SQLite after a crash.
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # A recording's transcript through the text tower (the "transcript" store), when Whisper wrote it
    # down beside a learned speech encoder; NULL otherwise (the cascade's vector is that already).
    text_vector: Mapped[bytes | None] = mapped_column(LargeBinary)


class MediaFile(Base):
    """A path on disk and the content it held when last indexed."""

    __tablename__ = "files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id"), index=True)
    size: Mapped[int] = mapped_column(Int64)
    mtime_ns: Mapped[int] = mapped_column(Int64)
    indexed_at: Mapped[float] = mapped_column(Float)
    # When the photo was taken (EXIF DateTimeOriginal, POSIX seconds); NULL when the file does not
    # say, and for rows indexed before migration 0003: searches by date then use mtime_ns.
    captured_at: Mapped[float | None] = mapped_column(Float)


class SkippedFile(Base):
    """A file that could not be indexed; size and mtime let unchanged bad files be passed over."""

    __tablename__ = "skipped"

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Int64)
    mtime_ns: Mapped[int] = mapped_column(Int64)
    skipped_at: Mapped[float] = mapped_column(Float)


class BundleRecord(Base):
    """The bundle the index was built with (one row)."""

    __tablename__ = "bundle_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    dim: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)


class Moment(Base):
    """A stretch of a long recording (a speech region, 3-20 s) embedded on its own; `id` is its FAISS id
    in the "moment" store. Children of a content: two paths to one recording share its moments, and
    they go when the content goes."""

    __tablename__ = "moments"
    __table_args__ = ({"sqlite_autoincrement": True},)  # ids never reused, as for contents

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("contents.id"), index=True)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    # What was said in it, when the bundle transcribes (the cascade) or Whisper wrote it down at index time.
    text: Mapped[str | None] = mapped_column(Text)
