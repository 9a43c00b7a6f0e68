"""The rollups the hot reports read, and how the database keeps them equal to the facts.

A rollup row sums the fact rows that share its key (reporting.models: SalesDayRollup,
FunnelCohortRollup, FunnelStageTimeRollup, PipelineStageRollup). Each rollup is described once
here (``ROLLUPS``: its fact table, the condition a fact must meet to count, the key and the
counters as SQL over one fact row), and that one description gives:

- the triggers that keep it: after a fact row is inserted, updated or deleted, its contribution
  is subtracted under the old values and added under the new ones, with
  ``INSERT ... ON CONFLICT DO UPDATE SET n = n + delta``;
- ``recompute``: the rollup computed again from the facts (the end of a rebuild);
- ``differences``: the rollup compared with the same computation (the consistency check).

Why triggers rather than deltas computed in Python by reporting.ingest: every write to a fact
table keeps the rollups, whoever makes it (events, an import's batch, merges, the rebuild's pages
and its final sweep, erasure, a fix an operator makes by hand), in the transaction that writes the
fact. And the trigger sees the row's true old values under the row's lock: two consumers changing
the same order one after the other cannot both subtract the same old contribution, and two
consumers adding to the same rollup row each add their own delta (the atomic upsert), so no
update is lost. A late older event (the version guard leaves the row alone) and a redelivery (no
write at all) fire nothing. An UPDATE that changes none of the columns a rollup reads (a rebuild
refreshing ``refreshed_at``) fires nothing either.

Plain Python producing SQL for PostgreSQL and SQLite; nothing here knows about nameko.
"""
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text

POSTGRESQL, SQLITE = "postgresql", "sqlite"
# How far a stored sum may be from the one computed again before it is a difference: SQLite keeps
# NUMERIC as floating point, so sums built by many additions differ from one SUM in the last bits.
EXACT, CENTS, SECONDS = Decimal(0), Decimal("0.005"), Decimal("0.5")


def column(name):
    return lambda row, dialect: f"{row}.{name}"


def sql(template):
    """An expression over one fact row, named ``{r}`` in ``template``."""
    return lambda row, dialect: template.format(r=row)


def utc_day(name):
    def expression(row, dialect):
        if dialect == POSTGRESQL:
            return f"CAST(({row}.{name} AT TIME ZONE 'UTC') AS DATE)"
        return f"date({row}.{name})"  # SQLAlchemy keeps SQLite timestamps as UTC text
    return expression


def seconds_between(start, end):
    """end - start in seconds, 0 when end is NULL; the arithmetic the funnel report used."""
    def expression(row, dialect):
        if dialect == POSTGRESQL:
            between = f"EXTRACT(EPOCH FROM {row}.{end}) - EXTRACT(EPOCH FROM {row}.{start})"
        else:
            between = f"(julianday({row}.{end}) - julianday({row}.{start})) * 86400"
        return f"COALESCE({between}, 0)"
    return expression


@dataclass(frozen=True)
class Rollup:
    table: str
    source: str
    # The fact columns the condition, key and counters read: an UPDATE changing none of them
    # changes no rollup row, and its trigger does not run.
    reads: tuple
    condition: object  # (row, dialect) -> SQL: the facts that count
    keys: tuple  # ((column, expression), ...): never NULL (see reporting.models)
    counters: tuple  # ((column, expression, tolerance), ...): summed; the first is a row count

    # --- the SQL ------------------------------------------------------------------

    def _upsert(self, select_part, adding):
        keys = ", ".join(name for name, _ in self.keys)
        counters = [name for name, _, _ in self.counters]
        if adding:
            update = ", ".join(f"{name} = {self.table}.{name} + excluded.{name}" for name in counters)
        else:
            update = ", ".join(f"{name} = excluded.{name}" for name in counters)
        return (f"INSERT INTO {self.table} ({keys}, {', '.join(counters)}) {select_part} "
                f"ON CONFLICT ({keys}) DO UPDATE SET {update}")

    def _delta(self, row, dialect, sign):
        """Add (sign "") or subtract (sign "-") the contribution of trigger row NEW or OLD."""
        values = [expression(row, dialect) for _, expression in self.keys]
        values += [f"{sign}({expression(row, dialect)})" for _, expression, _ in self.counters]
        # A SELECT without FROM but with WHERE: SQLite needs the WHERE before ON CONFLICT anyway.
        return self._upsert(f"SELECT {', '.join(values)} WHERE {self.condition(row, dialect)}", adding=True)

    def _forget_if_empty(self, row, dialect):
        """Delete the rollup row of trigger row OLD's key once no fact counts there any more: a
        fact moving between keys (an opportunity changing status) would otherwise leave a zero row
        behind at every move, and the reports read them all (seen: 99,000 of the funnel's
        141,000 cohort rows were zero). The row count is the first counter; when it is zero the
        sums are too. A concurrent transaction adding to the same key waits for this one's lock,
        and its upsert then inserts the row again: no addition is lost."""
        keys = " AND ".join(f"{name} = {expression(row, dialect)}" for name, expression in self.keys)
        return f"DELETE FROM {self.table} WHERE {keys} AND {self.counters[0][0]} = 0"

    def from_facts(self, dialect):
        """SELECT key..., counter... computed from the facts, one row per key."""
        values = [expression("r", dialect) for _, expression in self.keys]
        values += [f"SUM({expression('r', dialect)})" for _, expression, _ in self.counters]
        positions = ", ".join(str(n) for n in range(1, len(self.keys) + 1))
        return (f"SELECT {', '.join(values)} FROM {self.source} AS r WHERE {self.condition('r', dialect)} "
                f"GROUP BY {positions}")

    def triggers(self, dialect):
        """The statements creating the triggers that keep this rollup."""
        name = f"{self.table}_keep"
        if dialect == POSTGRESQL:
            changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in self.reads)
            return [
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n"
                f"  IF TG_OP <> 'INSERT' THEN\n    {self._delta('OLD', dialect, '-')};\n"
                f"    {self._forget_if_empty('OLD', dialect)};\n  END IF;\n"
                f"  IF TG_OP <> 'DELETE' THEN\n    {self._delta('NEW', dialect, '')};\n  END IF;\n"
                f"  RETURN NULL;\n"
                f"END\n$$",
                f"CREATE TRIGGER {name}_insert_delete AFTER INSERT OR DELETE ON {self.source} "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()",
                f"CREATE TRIGGER {name}_update AFTER UPDATE ON {self.source} "
                f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {name}()",
            ]
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in self.reads)
        return [
            f"CREATE TRIGGER {name}_insert AFTER INSERT ON {self.source} "
            f"BEGIN {self._delta('NEW', dialect, '')}; END",
            f"CREATE TRIGGER {name}_delete AFTER DELETE ON {self.source} "
            f"BEGIN {self._delta('OLD', dialect, '-')}; {self._forget_if_empty('OLD', dialect)}; END",
            f"CREATE TRIGGER {name}_update AFTER UPDATE ON {self.source} WHEN {changed} "
            f"BEGIN {self._delta('OLD', dialect, '-')}; {self._forget_if_empty('OLD', dialect)}; "
            f"{self._delta('NEW', dialect, '')}; END",
        ]

    def drop_triggers(self, dialect):
        name = f"{self.table}_keep"
        if dialect == POSTGRESQL:
            return [f"DROP TRIGGER IF EXISTS {name}_insert_delete ON {self.source}",
                    f"DROP TRIGGER IF EXISTS {name}_update ON {self.source}",
                    f"DROP FUNCTION IF EXISTS {name}()"]
        return [f"DROP TRIGGER IF EXISTS {name}_{event}" for event in ("insert", "delete", "update")]


OWNER = ("owner_id", sql("COALESCE({r}.owner_id, '')"))
TEAM = ("owner_team_id", sql("COALESCE({r}.owner_team_id, '')"))

ROLLUPS = (
    Rollup(
        table="sales_day_rollups", source="order_facts",
        reads=("counted", "placed_on", "owner_id", "owner_team_id", "currency", "total", "paid_amount"),
        # As the sales reports count: counted orders, on the day they were placed.
        condition=sql("{r}.counted AND {r}.placed_on IS NOT NULL"),
        keys=(("day", column("placed_on")), OWNER, TEAM, ("currency", column("currency"))),
        counters=(("orders", sql("1"), EXACT), ("revenue", column("total"), CENTS),
                  ("paid", column("paid_amount"), CENTS)),
    ),
    Rollup(
        table="sales_day_region_rollups", source="order_facts",
        reads=("counted", "placed_on", "owner_team_id", "customer_region", "currency", "total", "paid_amount"),
        condition=sql("{r}.counted AND {r}.placed_on IS NOT NULL"),
        keys=(("day", column("placed_on")), TEAM, ("region", sql("COALESCE({r}.customer_region, '')")),
              ("currency", column("currency"))),
        counters=(("orders", sql("1"), EXACT), ("revenue", column("total"), CENTS),
                  ("paid", column("paid_amount"), CENTS)),
    ),
    Rollup(
        table="funnel_cohort_rollups", source="opportunity_facts",
        reads=("pipeline_id", "created_at", "owner_id", "owner_team_id", "status", "furthest_position", "stage",
               "closed_at"),
        condition=sql("1 = 1"),
        keys=(("pipeline_id", column("pipeline_id")), ("created_on", utc_day("created_at")), OWNER, TEAM,
              ("status", column("status")),
              ("furthest_position", sql("COALESCE({r}.furthest_position, -1)")),
              ("lost_stage", sql("CASE WHEN {r}.status = 'lost' THEN {r}.stage ELSE '' END"))),
        counters=(("opportunities", sql("1"), EXACT),
                  ("closed", sql("CASE WHEN {r}.closed_at IS NULL THEN 0 ELSE 1 END"), EXACT),
                  ("cycle_seconds", seconds_between("created_at", "closed_at"), SECONDS)),
    ),
    Rollup(
        table="funnel_stage_time_rollups", source="stage_change_facts",
        reads=("pipeline_id", "opportunity_created_at", "owner_id", "owner_team_id", "from_stage",
               "seconds_in_previous_stage"),
        # A change whose opportunity has not arrived yet belongs to no cohort.
        condition=sql("{r}.from_stage IS NOT NULL AND {r}.opportunity_created_at IS NOT NULL"),
        keys=(("pipeline_id", column("pipeline_id")), ("created_on", utc_day("opportunity_created_at")), OWNER,
              TEAM, ("from_stage", column("from_stage"))),
        counters=(("changes", sql("CASE WHEN {r}.seconds_in_previous_stage IS NULL THEN 0 ELSE 1 END"), EXACT),
                  ("seconds", sql("COALESCE({r}.seconds_in_previous_stage, 0)"), EXACT)),
    ),
    Rollup(
        table="pipeline_stage_rollups", source="stage_change_facts",
        reads=("pipeline_id", "to_stage", "to_stage_position", "to_outcome"),
        condition=sql("1 = 1"),
        keys=(("pipeline_id", column("pipeline_id")), ("to_stage", column("to_stage")),
              ("to_stage_position", sql("COALESCE({r}.to_stage_position, -1)")),
              ("to_outcome", column("to_outcome"))),
        counters=(("changes", sql("1"), EXACT),),
    ),
)


# --- order_facts.customer_region: a copy of the customer's region --------------------------
#
# Kept by the database like the rollups, whoever writes: a customer fact written, changed or
# removed sets the copy on its orders; an order written or moved to another customer (a merge)
# takes its customer's region. An order whose customer is not known yet has none (NULL), as the
# join it replaces found none. On SQLite a trigger cannot set NEW's columns: an inserted order
# without its region gets it by an UPDATE after the insert (reporting.ingest gives the orders it
# writes their region already, sparing the rollups that second move). These triggers are created
# before the rollups' so that SQLite, which runs the newest trigger first, counts the insert
# before the move.

REGION_OF = "(SELECT region FROM customer_facts WHERE customer_id = {order}.customer_id)"


def _region_copy_triggers(dialect):
    set_orders = ("UPDATE order_facts SET customer_region = {region} WHERE customer_id = {row}.customer_id "
                  "AND customer_region IS DISTINCT FROM {region}")
    if dialect == POSTGRESQL:
        return [
            "CREATE OR REPLACE FUNCTION customer_region_copy() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "  IF TG_OP = 'DELETE' THEN\n"
            f"    {set_orders.format(region='NULL', row='OLD')};\n"
            "  ELSE\n"
            f"    {set_orders.format(region='NEW.region', row='NEW')};\n"
            "  END IF;\n"
            "  RETURN NULL;\n"
            "END\n$$",
            "CREATE TRIGGER customer_region_copy_insert_delete AFTER INSERT OR DELETE ON customer_facts "
            "FOR EACH ROW EXECUTE FUNCTION customer_region_copy()",
            "CREATE TRIGGER customer_region_copy_update AFTER UPDATE OF region ON customer_facts "
            "FOR EACH ROW WHEN (OLD.region IS DISTINCT FROM NEW.region) EXECUTE FUNCTION customer_region_copy()",
            "CREATE OR REPLACE FUNCTION order_customer_region() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n  NEW.customer_region := {REGION_OF.format(order='NEW')};\n  RETURN NEW;\nEND\n$$",
            # BEFORE: the rollup triggers (AFTER) see the order with its region already.
            "CREATE TRIGGER order_customer_region BEFORE INSERT OR UPDATE OF customer_id ON order_facts "
            "FOR EACH ROW EXECUTE FUNCTION order_customer_region()",
        ]
    set_orders = set_orders.replace("IS DISTINCT FROM", "IS NOT")
    return [
        f"CREATE TRIGGER customer_region_copy_insert AFTER INSERT ON customer_facts "
        f"BEGIN {set_orders.format(region='NEW.region', row='NEW')}; END",
        f"CREATE TRIGGER customer_region_copy_update AFTER UPDATE OF region ON customer_facts "
        f"WHEN OLD.region IS NOT NEW.region BEGIN {set_orders.format(region='NEW.region', row='NEW')}; END",
        f"CREATE TRIGGER customer_region_copy_delete AFTER DELETE ON customer_facts "
        f"BEGIN {set_orders.format(region='NULL', row='OLD')}; END",
        f"CREATE TRIGGER order_customer_region_insert AFTER INSERT ON order_facts "
        f"WHEN NEW.customer_region IS NOT {REGION_OF.format(order='NEW')} "
        f"BEGIN UPDATE order_facts SET customer_region = {REGION_OF.format(order='NEW')} "
        f"WHERE order_id = NEW.order_id; END",
        # customer_id is no rollup's column: only this trigger's own UPDATE moves the rollup rows.
        "CREATE TRIGGER order_customer_region AFTER UPDATE OF customer_id ON order_facts "
        "WHEN OLD.customer_id IS NOT NEW.customer_id "
        f"BEGIN UPDATE order_facts SET customer_region = {REGION_OF.format(order='NEW')} "
        "WHERE order_id = NEW.order_id; END",
    ]


def _drop_region_copy_triggers(dialect):
    if dialect == POSTGRESQL:
        return ["DROP TRIGGER IF EXISTS customer_region_copy_insert_delete ON customer_facts",
                "DROP TRIGGER IF EXISTS customer_region_copy_update ON customer_facts",
                "DROP TRIGGER IF EXISTS order_customer_region ON order_facts",
                "DROP FUNCTION IF EXISTS customer_region_copy()",
                "DROP FUNCTION IF EXISTS order_customer_region()"]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in (
        "customer_region_copy_insert", "customer_region_copy_update", "customer_region_copy_delete",
        "order_customer_region_insert", "order_customer_region")]


def copy_customer_regions(connection):
    """Set every order's customer_region from its customer (a migration's backfill)."""
    connection.exec_driver_sql(f"UPDATE order_facts SET customer_region = {REGION_OF.format(order='order_facts')}")


def _dialect(connection):
    return connection.dialect.name


def _chosen(tables):
    """The rollups whose table ``tables`` names; all of them for None. (A migration names those
    that existed at its revision: a later rollup's table is not there yet.)"""
    return [rollup for rollup in ROLLUPS if tables is None or rollup.table in tables]


def create_triggers(connection, tables=None, region_copy=True):
    """Create (or, on PostgreSQL, replace) the rollups' triggers and the region copy's; a migration
    and ``create_all`` call it."""
    dialect = _dialect(connection)
    if region_copy:
        for statement in _drop_region_copy_triggers(dialect) + _region_copy_triggers(dialect):
            connection.exec_driver_sql(statement)
    for rollup in _chosen(tables):
        for statement in rollup.drop_triggers(dialect) + rollup.triggers(dialect):
            connection.exec_driver_sql(statement)


def forget_empty_rows(connection, tables=None):
    """Delete the rollup rows no fact counts in any more (see Rollup._forget_if_empty)."""
    for rollup in _chosen(tables):
        connection.exec_driver_sql(f"DELETE FROM {rollup.table} WHERE {rollup.counters[0][0]} = 0")


def drop_triggers(connection):
    for statement in _drop_region_copy_triggers(_dialect(connection)):
        connection.exec_driver_sql(statement)
    for rollup in ROLLUPS:
        for statement in rollup.drop_triggers(_dialect(connection)):
            connection.exec_driver_sql(statement)


def recompute(session, tables=None):
    """Every rollup (or those whose table ``tables`` names) computed again from the facts, in the
    caller's transaction.

    Emptied, then filled with an upsert that overwrites: a consumer that committed a new rollup
    row meanwhile had committed its fact too, which the refill's own reading of the facts sees.
    """
    dialect = _dialect(session.get_bind())
    for rollup in _chosen(tables):
        session.execute(text(f"DELETE FROM {rollup.table}"))
        session.execute(text(rollup._upsert(rollup.from_facts(dialect), adding=False)))


def differences(session):
    """{rollup table: [keys whose stored counters differ from the facts']}; empty lists when equal.

    A stored row whose counters are all zero (its facts moved away) equals no row.
    """
    dialect = _dialect(session.get_bind())
    found = {}
    for rollup in ROLLUPS:
        width = len(rollup.keys)
        tolerances = [tolerance for _, _, tolerance in rollup.counters]
        keys = ", ".join(name for name, _ in rollup.keys)
        counters = ", ".join(name for name, _, _ in rollup.counters)

        def rows(statement):
            result = {}
            for row in session.execute(text(statement)):
                values = [Decimal(str(value or 0)) for value in row[width:]]
                if any(abs(value) > tolerance for value, tolerance in zip(values, tolerances)):
                    result[tuple(str(value) for value in row[:width])] = values
            return result

        stored = rows(f"SELECT {keys}, {counters} FROM {rollup.table}")
        computed = rows(rollup.from_facts(dialect))
        zero = [Decimal(0)] * len(tolerances)
        found[rollup.table] = sorted(
            key for key in set(stored) | set(computed)
            if any(abs(ours - theirs) > tolerance for ours, theirs, tolerance
                   in zip(stored.get(key, zero), computed.get(key, zero), tolerances)))
    return found
