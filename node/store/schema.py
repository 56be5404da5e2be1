"""The node's SQLite schema, as sqlite-utils migrations (applied in order, each once).

Tables:
- ``meta``: the store ``epoch`` (a random id made when the store is created;
  peers restart their cursor when it changes).
- ``bundles``: every bundle held, raw canonical bytes, with ``seq`` the local
  order of arrival (AUTOINCREMENT: strictly increasing and never reused) and
  ``state``: ``readable`` (we opened it), ``relay`` (we only carry it) or
  ``undecryptable`` (addressed to us but could not be opened or failed its
  record checks; kept for relaying, never shown).
- ``bundle_recipients``: (node, seq) so a national caller's feed is an index scan.
- ``records`` (latest version of each record we can read) and ``record_versions``
  (its history: every other version held).
- ``drafts``: local records never shared; they never leave the node.
- ``directory``, ``anchors``, ``pinned``: accepted descriptors and trust.
- ``peers`` with cursors and health; ``rejections`` counted per peer and reason.
- ``rosters``: latest roster per operation group.
- ``tokens``: hashes of API tokens.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("cenmesh")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE bundles (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            origin TEXT NOT NULL,
            created INTEGER NOT NULL,
            expires INTEGER NOT NULL,
            urgent INTEGER NOT NULL,
            size INTEGER NOT NULL,
            scope TEXT NOT NULL,
            raw BLOB NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('readable', 'relay', 'undecryptable')),
            note TEXT,
            via TEXT,
            received INTEGER NOT NULL
        );
        CREATE INDEX bundles_expires ON bundles (expires);
        CREATE TABLE bundle_recipients (
            node TEXT NOT NULL,
            seq INTEGER NOT NULL REFERENCES bundles(seq) ON DELETE CASCADE,
            PRIMARY KEY (node, seq)
        ) WITHOUT ROWID;
        CREATE TABLE records (
            id TEXT PRIMARY KEY,
            origin TEXT NOT NULL,
            kind TEXT NOT NULL,
            version INTEGER NOT NULL,
            bundle_id TEXT NOT NULL,
            audience TEXT NOT NULL,
            created INTEGER NOT NULL,
            ref TEXT,
            retracted INTEGER NOT NULL DEFAULT 0,
            body TEXT NOT NULL
        );
        CREATE INDEX records_kind_created ON records (kind, created);
        CREATE INDEX records_ref ON records (ref);
        CREATE TABLE record_versions (
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            bundle_id TEXT NOT NULL,
            created INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (id, version)
        );
        CREATE TABLE drafts (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            body TEXT NOT NULL,
            created INTEGER NOT NULL,
            shared_bundle TEXT
        );
        CREATE TABLE directory (
            node TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            name TEXT NOT NULL,
            country TEXT NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0,
            flagged TEXT,
            descriptor TEXT NOT NULL,
            updated INTEGER NOT NULL
        );
        CREATE TABLE anchors (node TEXT PRIMARY KEY, identity_key TEXT NOT NULL, name TEXT);
        CREATE TABLE pinned (node TEXT PRIMARY KEY);
        CREATE TABLE peers (
            node TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            epoch TEXT NOT NULL DEFAULT '',
            cursor INTEGER NOT NULL DEFAULT 0,
            last_ok INTEGER,
            last_error TEXT,
            last_error_at INTEGER,
            failures INTEGER NOT NULL DEFAULT 0,
            backoff_until INTEGER,
            lag INTEGER,
            directory_etag TEXT
        );
        CREATE TABLE rejections (
            peer TEXT NOT NULL,
            reason TEXT NOT NULL,
            count INTEGER NOT NULL,
            last INTEGER NOT NULL,
            PRIMARY KEY (peer, reason)
        );
        CREATE TABLE rosters (
            grp TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            members TEXT NOT NULL,
            not_after INTEGER NOT NULL,
            version INTEGER NOT NULL
        );
        CREATE TABLE tokens (
            name TEXT PRIMARY KEY,
            hash TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created INTEGER NOT NULL
        );
        """
    )


@migrations()
def m002_accounts_and_audit(db: Database) -> None:
    """Users are the rows of ``tokens`` (name, role, hash of the token, disabled).

    ``audit`` is append-only: each entry holds the hash of the one before it,
    so an edit or a deletion breaks the chain. ``sessions`` hold web logins
    by the hash of the cookie value, with their CSRF token.
    """
    db.executescript(
        """
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            user TEXT NOT NULL,
            role TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            detail TEXT,
            source TEXT,
            prev TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
        CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY,
            user TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created INTEGER NOT NULL,
            expires INTEGER NOT NULL
        );
        """
    )


@migrations()
def m003_search(db: Database) -> None:
    """Search over readable records, kept up to date in batches by ingest (node/store/search_index.py).

    ``record_facets`` holds one row per searchable record (the latest version
    of each seizure, alert and message) with the filter columns, and
    ``records_fts`` its words (``text``) and one token per facet value
    (``tags``), keyed by the same rowid. The rowid encodes ``created`` and
    the category, so "newest first" is rowid order and counts by category
    need only rowids. The two commonest searches on two columns (route;
    origin and category) have an index ending with ``retracted``, so they
    are answered from it alone; one filter or many go through the ``tags``
    in FTS5, which walks a single token's doclist as fast as an index.
    ``facets_date`` gives the range of dates held.
    ``transit`` is written ``,TG,BJ,``. Records already held when this
    migration runs are indexed by it.
    """
    db.executescript(
        """
        CREATE TABLE record_facets (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            origin TEXT NOT NULL,
            category TEXT,
            hs_code TEXT,
            departure TEXT,
            destination TEXT,
            transit TEXT,
            date TEXT,
            tlp TEXT,
            transport_mode TEXT,
            has_feedback INTEGER NOT NULL DEFAULT 0,
            retracted INTEGER NOT NULL DEFAULT 0,
            created INTEGER NOT NULL
        );
        CREATE INDEX facets_origin_category ON record_facets (origin, category, retracted);
        CREATE INDEX facets_route ON record_facets (departure, destination, retracted);
        CREATE INDEX facets_date ON record_facets (date);
        CREATE VIRTUAL TABLE records_fts USING fts5(
            text, tags, tokenize='porter unicode61 remove_diacritics 2', columnsize=0
        );
        """
    )
    # Imported here so that the rest of the schema does not depend on the index code.
    from node.store.search_index import reindex_all

    reindex_all(db.conn)


@migrations()
def m004_records_newest_first(db: Database) -> None:
    """The records list pages newest first; without this index each page sorted the whole table."""
    db.execute("CREATE INDEX records_created_id ON records (created DESC, id)")


@migrations()
def m005_versions_hold_history_only(db: Database) -> None:
    """The current version of a record lives in ``records`` alone; ``record_versions`` keeps the others."""
    db.execute("DELETE FROM record_versions WHERE EXISTS (SELECT 1 FROM records r"
               " WHERE r.id = record_versions.id AND r.version = record_versions.version)")


def migrate(db: Database) -> None:
    """Bring the schema up to date."""
    migrations.apply(db)
