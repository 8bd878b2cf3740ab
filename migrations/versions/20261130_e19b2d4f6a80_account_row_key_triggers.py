"""H2: on PostgreSQL, account_row's key to dataset kept by statement-level triggers (issue 18).

The foreign key ``fk_account_row_dataset_id_dataset`` checked each inserted row on its
own: ~3.5 s of the server's CPU per million uploaded rows. On PostgreSQL it is replaced
by triggers that do the same once per statement (what they keep, and why:
``experiments/account_row_link.py``; this is a frozen copy of its SQL, and
``tests/migrations`` checks that the two agree). SQLite keeps the real key. The
downgrade drops the triggers and restores the key (checking the existing rows).

Revision ID: e19b2d4f6a80
Revises: e18e5a6b7c85
Create Date: 2026-11-30 13:10:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'e19b2d4f6a80'
down_revision: str | None = 'e18e5a6b7c85'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = 'fk_account_row_dataset_id_dataset'

FUNCTIONS = r"""
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

# Run with the search_path pinned to the schema the functions (and tables) are in.
PIN_SEARCH_PATH = r"""
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

TRIGGERS = (
    ('account_row', 'account_row_dataset_inserted',
     'AFTER INSERT ON account_row REFERENCING NEW TABLE AS new_rows'
     ' FOR EACH STATEMENT EXECUTE FUNCTION account_row_dataset_exists()'),
    ('account_row', 'account_row_dataset_updated',
     'AFTER UPDATE ON account_row REFERENCING NEW TABLE AS new_rows'
     ' FOR EACH STATEMENT EXECUTE FUNCTION account_row_dataset_exists()'),
    ('dataset', 'dataset_deleted_rows',
     'AFTER DELETE ON dataset REFERENCING OLD TABLE AS old_rows'
     ' FOR EACH STATEMENT EXECUTE FUNCTION dataset_delete_rows()'),
    ('dataset', 'dataset_truncated_rows',
     'AFTER TRUNCATE ON dataset FOR EACH STATEMENT EXECUTE FUNCTION dataset_truncate_rows()'),
    ('dataset', 'dataset_id_kept',
     'BEFORE UPDATE OF id ON dataset FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)'
     ' EXECUTE FUNCTION dataset_keep_id()'),
)
FUNCTION_NAMES = (
    'account_row_dataset_exists', 'dataset_delete_rows', 'dataset_truncate_rows',
    'dataset_keep_id',
)


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.drop_constraint(CONSTRAINT, 'account_row', type_='foreignkey')
    op.execute(FUNCTIONS)
    op.execute(PIN_SEARCH_PATH)
    for _table, name, body in TRIGGERS:
        op.execute(f'CREATE TRIGGER {name} {body}')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, name, _body in TRIGGERS:
        op.execute(f'DROP TRIGGER IF EXISTS {name} ON {table}')
    for name in FUNCTION_NAMES:
        op.execute(f'DROP FUNCTION IF EXISTS {name}()')
    op.create_foreign_key(CONSTRAINT, 'account_row', 'dataset', ['dataset_id'], ['id'],
                          ondelete='CASCADE')
