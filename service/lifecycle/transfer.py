"""Import and export of links (CSV or JSON Lines), and purging links long gone.

Columns (CSV header row; the same names as JSON Lines keys): ``url``,
``alias``, ``code``, ``title``, ``tags`` (``|``-separated in CSV, a list in
JSON Lines), ``valid_since``, ``valid_until`` (RFC 3339), ``max_visits``,
``redirect_status``, ``disabled``, ``fallback_url``, ``password_hash`` (a
password-protected link's argon2id hash, never its password). Only ``url`` is required.

An import is safe to run twice: a row whose alias (or code) the importing
owner already has is skipped, not duplicated; one another owner has is
refused. ``code`` is what an export writes for a generated code: with the
same salt it decodes to its row id, which the import keeps, so an export
imported into an empty database gives every link its old short URL again.
Rows go in chunks through the bulk path (COPY on PostgreSQL), and nothing
is written to Redis (an import says nothing about which links will be
visited; `warm-cache` does that).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from ..coordination import events
from ..errors import InvalidInput
from ..store import sql

log = logging.getLogger(__name__)

COLUMNS = ("url", "alias", "code", "title", "tags", "valid_since", "valid_until", "max_visits",
           "redirect_status", "disabled", "fallback_url", "password_hash")
# A password-protected link's argon2id hash travels as it is (never the password), so an
# export imported elsewhere keeps its links private.
ARGON2_PREFIX = "$argon2"
CHUNK = 10_000


@dataclass
class ImportReport:
    created: int = 0
    skipped: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        return f"created {self.created}, skipped {self.skipped} (already there), refused {len(self.refused)}"


def read_rows(stream, fmt: str) -> Iterator[tuple[int, dict | str]]:
    """(line number, row) per record; a row that cannot be read at all comes as its reason."""
    if fmt == "jsonl":
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"not JSON: {exc.msg}"
                continue
            yield number, row if isinstance(row, dict) else "not a JSON object"
        return
    reader = csv.DictReader(stream)
    unknown = set(reader.fieldnames or ()) - set(COLUMNS)
    if "url" not in (reader.fieldnames or ()):
        raise ValueError("the CSV header row has no 'url' column")
    if unknown:
        raise ValueError(f"unknown CSV columns: {', '.join(sorted(unknown))} (known: {', '.join(COLUMNS)})")
    for row in reader:
        cleaned = {name: value for name, value in row.items() if value not in (None, "")}
        if "tags" in cleaned:
            cleaned["tags"] = [tag for tag in cleaned["tags"].split("|") if tag]
        yield reader.line_num, cleaned


_PLAIN = frozenset({"url", "alias", "code", "title", "tags"})


def _parse(row: dict) -> dict:
    """A row's fields with their types, or InvalidInput naming the column.

    The same rules as POST /api/v1/links (its model). Rows of only text
    columns, most of an import, skip building the model: at a million rows
    that was a fifth of the import's time.
    """
    if row.keys() <= _PLAIN and all(isinstance(row[name], str) for name in row.keys() - {"tags"}):
        if len(row.get("title", "")) > 200:
            raise InvalidInput("title", "String should have at most 200 characters")
        if "url" not in row:
            raise InvalidInput("url", "Field required")
        return {name: value for name, value in row.items() if name != "code"}
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a column linkgate knows")
    fields = {name: value for name, value in row.items() if name != "code"}
    for name in ("max_visits", "redirect_status"):
        if isinstance(fields.get(name), str):
            if not fields[name].strip().isdigit():
                raise InvalidInput(name, "must be a whole number")
            fields[name] = int(fields[name])
    if isinstance(fields.get("disabled"), str):
        fields["disabled"] = fields["disabled"].strip().lower() in ("1", "true", "yes")
    try:
        return _link_model().model_validate(fields).model_dump(exclude_unset=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidInput(".".join(str(p) for p in error["loc"]) or "row", error["msg"]) from None


def _link_model():
    from ..api.models import LinkCreate  # imported late: the API layer is not needed to export

    return LinkCreate


async def import_links(links, rows: Iterator[tuple[int, dict | str]], *, owner_id: int | None,
                       progress=None) -> ImportReport:
    """Import `rows` as links owned by `owner_id` (None: no owner, as links made before keys)."""
    report = ImportReport()
    chunk: list[tuple[int, dict | str]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            await _import_chunk(links, chunk, owner_id, report)
            if progress is not None:
                progress.update(len(chunk))
            chunk = []
    if chunk:
        await _import_chunk(links, chunk, owner_id, report)
        if progress is not None:
            progress.update(len(chunk))
    return report


async def _import_chunk(links, chunk, owner_id, report: ImportReport) -> None:
    generated, coded = [], []
    for number, row in chunk:
        if isinstance(row, str):
            report.refused.append((number, row))
            continue
        try:
            prepared = _prepare(links, row, owner_id)
        except InvalidInput as exc:
            report.refused.append((number, f"{exc.field}: {exc.reason}"))
            continue
        (coded if "code" in prepared else generated).append((number, prepared))
    async with links.db.transaction() as session:
        taken = await sql.existing_codes(session=session, codes=[row["code"] for _, row in coded])
        fresh, seen = [], set()
        for number, row in coded:
            if row["code"] in taken or row["code"] in seen:
                if row["code"] in seen or taken[row["code"]] == owner_id:
                    report.skipped += 1
                else:
                    report.refused.append((number, f"code '{row['code']}' is taken by another owner"))
                continue
            seen.add(row["code"])
            fresh.append(row)
        now = links.clock()
        await sql.insert_coded_links(session=session, rows=fresh, now=now)
        ids_codes = await sql.insert_generated_links(session=session, rows=[row for _, row in generated],
                                                      now=now, encode=links.codec.encode)
        # link.created for each, in the import's own transaction (the outbox, as for a single create).
        made = await events.record_for_codes(session=session, kind=events.CREATED, now=now,
                                             codes=[row["code"] for row in fresh] + [code for _, code in ids_codes])
    report.created += len(fresh) + len(ids_codes)
    if links.changes is not None:
        await links.changes.schedule_expiry([row for row in made if row.valid_until is not None])
    # Visitors may have asked for these codes before they existed (cached misses).
    await links.clear_misses([row["code"] for row in fresh] + [code for _, code in ids_codes])


def _prepare(links, row: dict, owner_id: int | None) -> dict:
    password_hash = row.pop("password_hash", None) or None
    if password_hash is not None and (not isinstance(password_hash, str) or not password_hash.startswith(ARGON2_PREFIX)
                                      or len(password_hash) > 255):
        raise InvalidInput("password_hash", "must be an argon2 hash as linkgate exports it")
    fields = _parse(row)
    status = fields.get("redirect_status") or links.settings.default_redirect_status
    prepared = {
        "url": links.normalise(fields["url"]),
        "redirect_status": status,
        "query_policy": None,
        "created_by_id": owner_id,
        **links.lifecycle_for_import(status=status, **{k: v for k, v in fields.items()
                                                      if k not in ("url", "alias", "redirect_status", "query")}),
    }
    if password_hash is not None:
        prepared["password_hash"] = password_hash
    if fields.get("alias"):
        prepared["code"], prepared["is_alias"] = links.codec.check_alias(fields["alias"]), True
    elif row.get("code"):
        row_id = links.codec.decode(str(row["code"]))
        if row_id is None or links.codec.encode(row_id) != row["code"]:
            raise InvalidInput("code", "is not a code this service generated (another salt?); use alias instead")
        prepared["code"], prepared["id"] = row["code"], row_id
    return prepared


def _when(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else ""


async def export_links(links, out, fmt: str) -> int:
    """Write every live link to `out`; returns how many."""
    from ..lifecycle.state import LinkFlags

    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(COLUMNS)
    count, after = 0, 0
    while True:
        async with links.db.reading() as session:
            batch = await sql.export_links(session=session, after_id=after, limit=CHUNK)
        if not batch:
            return count
        for link, tags in batch:
            record = {
                "url": link.url, "alias": link.code if link.is_alias else None,
                "code": None if link.is_alias else link.code, "title": link.title, "tags": tags,
                "valid_since": _when(link.valid_since) or None, "valid_until": _when(link.valid_until) or None,
                "max_visits": link.max_visits, "redirect_status": link.redirect_status,
                "disabled": bool((link.flags or 0) & LinkFlags.DISABLED), "fallback_url": link.fallback_url,
                "password_hash": link.password_hash,
            }
            if writer:
                writer.writerow(["|".join(v) if isinstance(v, list) else ("true" if v is True else
                                 "" if v in (None, False) else v) for v in (record[c] for c in COLUMNS)])
            else:
                out.write(json.dumps({k: v for k, v in record.items() if v not in (None, [], False)}) + "\n")
        count += len(batch)
        after = batch[-1][0].id


def open_text(path: str):
    return sys.stdin if path == "-" else io.open(path, newline="", encoding="utf-8-sig")
