"""PostgreSQL: ``account_row.dataset_id → dataset.id`` kept by statement-level triggers.

A real foreign key checks every inserted row on its own (a ``SELECT … FOR KEY SHARE`` per
row): ~3.5 s of the server's ~6.5 s of CPU for a million uploaded rows. These triggers
keep everything that key gave, once per statement:

* rows naming a dataset that does not exist are refused, on insert and on update, with
  the foreign key's own SQLSTATE (23503, an ``IntegrityError``), name and wording;
* the referenced datasets are locked ``FOR KEY SHARE`` as the key's check does, so a
  dataset deleted (or its id changed) at the same moment either waits for the inserting
  transaction — and then takes its rows with it — or, having gone first, makes the
  insert fail;
* deleting a dataset deletes its rows (``ON DELETE CASCADE``); truncating ``dataset``
  truncates them too (the key would have demanded ``CASCADE``);
* changing the id of a dataset that has rows is refused (the key's ``NO ACTION``);
* they act on the tables of the schema they are installed in, whatever the search_path
  of the session that fires them (the key named its tables exactly).

One thing the key gave is not kept: its cascade saw, and refused with a serialization
failure, rows committed after the snapshot of a ``REPEATABLE READ`` or ``SERIALIZABLE``
delete; ``dataset_delete_rows`` sees only that snapshot's rows, so such a delete racing an
insert into the same dataset would leave the insert's rows behind. The app deletes
datasets under ``READ COMMITTED`` only (each statement's snapshot is new, so the rows of
an insert the delete waited for are deleted), and only an importing dataset gets rows
from another transaction.

SQLite keeps the real foreign key (its check costs ~0.3 s per million rows). The
migration that installs these (``e19b2d4f6a80``) holds its own copy of this SQL, as
migrations do; ``tests/migrations`` checks that the two install the same thing.
"""

from __future__ import annotations

#: The foreign key these triggers stand in for (the naming convention's name).
CONSTRAINT = "fk_account_row_dataset_id_dataset"

_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION account_row_dataset_exists() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint[];
    locked bigint;
    missing bigint;
BEGIN
    SELECT array_agg(DISTINCT dataset_id) INTO wanted FROM new_rows;
    IF wanted IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM dataset d WHERE d.id = ANY (wanted) FOR KEY SHARE OF d;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < cardinality(wanted) THEN
        SELECT w INTO missing FROM unnest(wanted) AS w
        WHERE NOT EXISTS (SELECT 1 FROM dataset d WHERE d.id = w) ORDER BY w LIMIT 1;
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = 'insert or update on table "account_row" violates foreign key '
                      'constraint "fk_account_row_dataset_id_dataset"',
            DETAIL = 'Key (dataset_id)=(' || coalesce(missing::text, '?')
                     || ') is not present in table "dataset".',
            TABLE = 'account_row', COLUMN = 'dataset_id',
            CONSTRAINT = 'fk_account_row_dataset_id_dataset';
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION dataset_delete_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM account_row WHERE dataset_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION dataset_truncate_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM account_row) THEN
        TRUNCATE account_row;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION dataset_keep_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM account_row WHERE dataset_id = OLD.id) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'foreign_key_violation',
            MESSAGE = 'update or delete on table "dataset" violates foreign key constraint '
                      '"fk_account_row_dataset_id_dataset" on table "account_row"',
            DETAIL = 'Key (id)=(' || OLD.id
                     || ') is still referenced from table "account_row".',
            TABLE = 'dataset', CONSTRAINT = 'fk_account_row_dataset_id_dataset';
    END IF;
    RETURN NEW;
END
$$;
"""

# Each function names its tables unqualified, so it runs with the search_path pinned to
# the schema it is installed in (where the migration or create_all put the tables):
# otherwise a session with another search_path (psql, pg_restore's empty one, another
# install's) resolves them elsewhere, where the key would not have. pg_temp last, so that
# a temporary table cannot stand in for them either.
_PIN_SEARCH_PATH = r"""
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['account_row_dataset_exists', 'dataset_delete_rows',
                                'dataset_truncate_rows', 'dataset_keep_id'] LOOP
        EXECUTE 'ALTER FUNCTION ' || quote_ident(current_schema()) || '.'
                || quote_ident(name) || '() SET search_path = '
                || quote_ident(current_schema()) || ', pg_temp';
    END LOOP;
END
$$;
"""

_TRIGGERS = (
    "CREATE TRIGGER account_row_dataset_inserted AFTER INSERT ON account_row"
    " REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION account_row_dataset_exists()",
    "CREATE TRIGGER account_row_dataset_updated AFTER UPDATE ON account_row"
    " REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION account_row_dataset_exists()",
    "CREATE TRIGGER dataset_deleted_rows AFTER DELETE ON dataset"
    " REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION dataset_delete_rows()",
    "CREATE TRIGGER dataset_truncated_rows AFTER TRUNCATE ON dataset"
    " FOR EACH STATEMENT EXECUTE FUNCTION dataset_truncate_rows()",
    "CREATE TRIGGER dataset_id_kept BEFORE UPDATE OF id ON dataset"
    " FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)"
    " EXECUTE FUNCTION dataset_keep_id()",
)

#: Statements that install the triggers (after both tables exist).
INSTALL: tuple[str, ...] = (_FUNCTIONS, _PIN_SEARCH_PATH, *_TRIGGERS)

#: The triggers' names, by table (what the tests and the downgrade look for).
TRIGGERS: dict[str, tuple[str, ...]] = {
    "account_row": ("account_row_dataset_inserted", "account_row_dataset_updated"),
    "dataset": ("dataset_deleted_rows", "dataset_truncated_rows", "dataset_id_kept"),
}
FUNCTIONS: tuple[str, ...] = (
    "account_row_dataset_exists", "dataset_delete_rows", "dataset_truncate_rows",
    "dataset_keep_id",
)
