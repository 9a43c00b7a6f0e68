"""Pipelines and opportunities: the stages a deal goes through, who may move it
where, what each move records, and what it publishes.

Plain Python over a SQLAlchemy session; nothing here knows about nameko.
"""
from collections import defaultdict
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crm_common.context import RequestContext
from crm_common.errors import Conflict, Forbidden, NotFound, ValidationFailed
from crm_common.metrics import count_after_commit
from crm_common.outbox import record_event
from crm_common.pagination import check_limit, keyset_page, parse_sort
from crm_common.permissions import visibility
from crm_common.types import utcnow
from crm_common.validation import load
from crm_common.versioning import check_version, flush_versioned

from sales.domain import require_visible_customer
from sales.metrics import OPPORTUNITIES_CREATED, OPPORTUNITY_STAGE_CHANGES
from sales.models import Opportunity, OpportunityStageChange, Pipeline, PipelineStage
from sales.money import as_wire, round_money
from sales.pipeline_schemas import (
    CLOSED_OUTCOMES, LOST_REASON_ONLY_WHEN_LOST, LOST_REASON_REQUIRED, MAX_STAGES, NO_DECIMALS_FOR_CURRENCY,
    OPPORTUNITY_SORTABLE, BoardQuery, OpportunityCreate, OpportunityFilters, OpportunityOut, OpportunityUpdate,
    PipelineCreate, PipelineOut, StageAdd, StageChangeOut, StageMove, StageOut,
)

PRODUCER = "sales"
WRITER_ROLES = ("admin", "manager", "sales", "system")
# Reopening a won or lost deal changes the numbers everyone reported: not for sales users.
REOPENER_ROLES = ("admin", "manager", "system")
PIPELINE_ADMIN_ROLES = ("admin", "system")

DEFAULT_PIPELINE_NAME = "Default"
# The pipeline of issue 4: (key, name, default win probability, outcome). Migration
# 0002 seeds databases from its own frozen copy; this one serves create_all databases.
DEFAULT_STAGES = [
    ("qualification", "Qualification", 10, "open"),
    ("needs_analysis", "Needs analysis", 25, "open"),
    ("proposal", "Proposal", 50, "open"),
    ("negotiation", "Negotiation", 75, "open"),
    ("won", "Won", 100, "won"),
    ("lost", "Lost", 0, "lost"),
]
# Opportunities without an expected close date sort after every dated one.
NO_CLOSE_DATE = date(9999, 12, 31)

pipeline_out = PipelineOut()
opportunity_out = OpportunityOut()
stage_change_out = StageChangeOut()
stage_out = StageOut()


def default_pipeline(session):
    """The default pipeline, created with DEFAULT_STAGES if this database has none."""
    pipeline = session.execute(select(Pipeline).where(Pipeline.is_default.is_(True))).scalars().first()
    if pipeline is None:
        pipeline = Pipeline(name=DEFAULT_PIPELINE_NAME, is_default=True, created_at=utcnow())
        session.add(pipeline)
        session.flush()
        session.add_all(PipelineStage(pipeline_id=pipeline.id, key=key, name=name, position=position,
                                      probability=probability, outcome=outcome)
                        for position, (key, name, probability, outcome) in enumerate(DEFAULT_STAGES))
        session.flush()
    return pipeline


def stages_of(session, pipeline_id):
    return session.execute(select(PipelineStage).where(PipelineStage.pipeline_id == pipeline_id)
                           .order_by(PipelineStage.position)).scalars().all()


def require_writer(context, what):
    if context.role not in WRITER_ROLES:
        raise Forbidden(f"Your role may not change {what}.")


class Pipelines:
    """The pipelines and their stages: everyone reads them, admins shape them."""

    def __init__(self, session, context: RequestContext):
        self.session = session
        self.context = context

    def list(self):
        default_pipeline(self.session)
        pipelines = self.session.execute(
            select(Pipeline).order_by(Pipeline.is_default.desc(), Pipeline.name)).scalars().all()
        return {"items": [self._dump(pipeline) for pipeline in pipelines]}

    def get(self, pipeline_id):
        return self._dump(self.find(pipeline_id))

    def find(self, pipeline_id):
        default_pipeline(self.session)
        pipeline = self.session.get(Pipeline, str(pipeline_id))
        if pipeline is None:
            raise NotFound(f"Pipeline {pipeline_id} was not found.")
        return pipeline

    def create(self, data):
        self._require_admin()
        data = load(PipelineCreate, data)
        self._refuse_taken_name(data["name"])
        pipeline = Pipeline(name=data["name"], is_default=False, created_at=utcnow())
        self.session.add(pipeline)
        self.session.flush()
        self.session.add_all(PipelineStage(pipeline_id=pipeline.id, position=position, **stage)
                             for position, stage in enumerate(data["stages"]))
        self._flush_unique(data["name"])
        return self._dump(pipeline)

    def add_stage(self, pipeline_id, data):
        """Insert an open stage; opportunities keep their stages (only positions move)."""
        self._require_admin()
        data = load(StageAdd, data)
        pipeline = self.find(pipeline_id)
        stages = stages_of(self.session, pipeline.id)
        if any(stage.key == data["key"] for stage in stages):
            raise Conflict(f"Pipeline {pipeline.name!r} already has a stage {data['key']!r}.",
                           {"key": ["This pipeline already has a stage with this key."]})
        if len(stages) >= MAX_STAGES:
            raise Conflict(f"A pipeline has at most {MAX_STAGES} stages.")
        last_open = max((stage.position for stage in stages if stage.outcome == "open"), default=-1)
        position = data.pop("position", last_open + 1)
        if position > len(stages):
            raise ValidationFailed("position is out of range",
                                   {"position": [f"Must be between 0 and {len(stages)}."]})
        for stage in stages[position:]:
            stage.position += 1
        self.session.add(PipelineStage(pipeline_id=pipeline.id, position=position, outcome="open", **data))
        self.session.flush()
        return self._dump(pipeline)

    def board(self, pipeline_id, query=None):
        """The caller's visible open opportunities by open stage, in stage order: count, totals
        per currency, and the first ``per_stage`` of each (soonest expected close first)."""
        per_stage = load(BoardQuery, query or {})["per_stage"]
        pipeline = self.find(pipeline_id)
        stages = [stage for stage in stages_of(self.session, pipeline.id) if stage.outcome == "open"]
        visible = visible_to(self.context)
        scope = [Opportunity.pipeline_id == pipeline.id, Opportunity.status == "open"]
        if visible is not None:
            scope.append(visible)
        sums = self.session.execute(
            select(Opportunity.stage_id, Opportunity.currency, func.count(), func.sum(Opportunity.amount))
            .where(*scope).group_by(Opportunity.stage_id, Opportunity.currency)).all()
        counts, totals = defaultdict(int), defaultdict(dict)
        for stage_id, currency, count, total in sums:
            counts[stage_id] += count
            totals[stage_id][currency] = as_wire(round_money(total, currency))
        columns = []
        for stage in stages:
            rows = self.session.execute(
                select(Opportunity).where(*scope, Opportunity.stage_id == stage.id)
                .order_by(func.coalesce(Opportunity.expected_close_date, NO_CLOSE_DATE), Opportunity.created_at,
                          Opportunity.id)
                .limit(per_stage)).scalars().all() if per_stage else []
            columns.append({
                "stage": stage_out.dump(stage),
                "count": counts[stage.id],
                "totals": dict(sorted(totals[stage.id].items())),
                "opportunities": [to_dict(row, stage) for row in rows],
            })
        return {"pipeline": {"id": pipeline.id, "name": pipeline.name}, "stages": columns}

    def _dump(self, pipeline):
        return pipeline_out.dump({"id": pipeline.id, "name": pipeline.name, "is_default": pipeline.is_default,
                                  "created_at": pipeline.created_at,
                                  "stages": stages_of(self.session, pipeline.id)})

    def _require_admin(self):
        if self.context.role not in PIPELINE_ADMIN_ROLES:
            raise Forbidden("Only admins shape pipelines.")

    def _refuse_taken_name(self, name):
        if self.session.execute(select(Pipeline.id).where(Pipeline.name == name)).first():
            raise Conflict(f"A pipeline named {name!r} exists.", {"name": ["A pipeline with this name exists."]})

    def _flush_unique(self, name):
        try:
            self.session.flush()
        except IntegrityError:
            # Two admins creating one name at once: the unique constraint decides.
            raise Conflict(f"A pipeline named {name!r} exists.", {"name": ["A pipeline with this name exists."]})


def visible_to(context):
    return visibility(context, Opportunity.owner_id, Opportunity.owner_team_id)


def to_dict(opportunity, stage):
    return {**opportunity_out.dump(opportunity), "stage": stage.key}


def event_data(opportunity, stage, pipeline_stages=None):
    """What every opportunity event carries: enough for reporting to aggregate without asking."""
    return {
        "id": opportunity.id,
        "customer_id": opportunity.customer_id,
        "title": opportunity.title,
        "owner_id": opportunity.owner_id,
        "owner_team_id": opportunity.owner_team_id,
        "pipeline_id": opportunity.pipeline_id,
        "stage": stage.key,
        # Position and outcome travel with the key: reporting orders funnels by them without
        # keeping its own copy of every pipeline.
        "stage_position": stage.position,
        "stage_outcome": stage.outcome,
        "status": opportunity.status,
        "amount": as_wire(opportunity.amount),
        "currency": opportunity.currency,
        "probability": opportunity.probability,
        "expected_close_date": opportunity.expected_close_date.isoformat()
        if opportunity.expected_close_date else None,
        "source": opportunity.source,
        "lost_reason": opportunity.lost_reason,
        "created_at": opportunity.created_at.isoformat(),
        "closed_at": opportunity.closed_at.isoformat() if opportunity.closed_at else None,
        "version": opportunity.version,
    }


def stage_change_data(change, opportunity, from_stage, to_stage):
    """One move (or the creation) of an opportunity as its events and reporting's rebuild pages carry it;
    ``from_stage`` is None on creation."""
    return {
        "stage_change_id": str(change.id),  # ids are strings on the wire
        "opportunity_id": change.opportunity_id,
        "pipeline_id": opportunity.pipeline_id,
        "owner_id": opportunity.owner_id,
        "owner_team_id": opportunity.owner_team_id,
        "from_stage": from_stage.key if from_stage is not None else None,
        "to_stage": to_stage.key,
        "to_stage_position": to_stage.position,
        "to_outcome": to_stage.outcome,
        "changed_at": change.changed_at.isoformat(),
        "seconds_in_previous_stage": change.seconds_in_previous_stage,
    }


class Opportunities:
    """The opportunities one caller may see and work."""

    def __init__(self, session, context: RequestContext):
        self.session = session
        self.context = context
        self.pipelines = Pipelines(session, context)

    # --- reading ---------------------------------------------------------

    def find(self, opportunity_id):
        statement = select(Opportunity).where(Opportunity.id == str(opportunity_id))
        condition = visible_to(self.context)
        if condition is not None:
            statement = statement.where(condition)
        opportunity = self.session.execute(statement).scalar_one_or_none()
        if opportunity is None:
            # Records the caller may not see answer exactly like missing ones.
            raise NotFound(f"Opportunity {opportunity_id} was not found.")
        return opportunity

    def get(self, opportunity_id):
        opportunity = self.find(opportunity_id)
        return to_dict(opportunity, self._stage(opportunity.stage_id))

    def list(self, filters=None, limit=None, cursor=None, sort=None):
        limit = check_limit(limit)
        filters = load(OpportunityFilters, filters or {})
        sort_column, descending, sort_value = self._sort(sort)
        statement = select(Opportunity)
        condition = visible_to(self.context)
        if condition is not None:
            statement = statement.where(condition)
        for name in ("pipeline_id", "owner_id", "customer_id"):
            if name in filters:
                statement = statement.where(getattr(Opportunity, name) == filters[name])
        if "stage" in filters:
            statement = statement.where(Opportunity.stage_id.in_(
                select(PipelineStage.id).where(PipelineStage.key == filters["stage"])))
        if "status" in filters:
            statuses = CLOSED_OUTCOMES if filters["status"] == "closed" else (filters["status"],)
            statement = statement.where(Opportunity.status.in_(statuses))
        if "amount_min" in filters:
            statement = statement.where(Opportunity.amount >= filters["amount_min"])
        if "amount_max" in filters:
            statement = statement.where(Opportunity.amount <= filters["amount_max"])
        if "close_from" in filters:
            statement = statement.where(Opportunity.expected_close_date >= filters["close_from"])
        if "close_to" in filters:
            statement = statement.where(Opportunity.expected_close_date <= filters["close_to"])
        rows, next_cursor = keyset_page(self.session, statement, sort_column, Opportunity.id, descending,
                                        limit, cursor, sort_value=sort_value)
        stages = self._stages({row.stage_id for row in rows})
        return {"items": [to_dict(row, stages[row.stage_id]) for row in rows], "next_cursor": next_cursor}

    def history(self, opportunity_id, limit=None, cursor=None):
        """Every move of the opportunity, newest first, with the time spent in the stage it left."""
        opportunity = self.find(opportunity_id)
        statement = select(OpportunityStageChange).where(OpportunityStageChange.opportunity_id == opportunity.id)
        rows, next_cursor = keyset_page(self.session, statement, OpportunityStageChange.id,
                                        OpportunityStageChange.id, True, limit, cursor)
        stages = self._stages({row.to_stage_id for row in rows} | {row.from_stage_id for row in rows} - {None})
        items = []
        for row in rows:
            items.append(stage_change_out.dump({
                "id": row.id, "opportunity_id": row.opportunity_id,
                "from_stage": stages[row.from_stage_id].key if row.from_stage_id else None,
                "to_stage": stages[row.to_stage_id].key, "note": row.note, "changed_by": row.changed_by,
                "changed_at": row.changed_at, "seconds_in_previous_stage": row.seconds_in_previous_stage,
            }))
        return {"items": items, "next_cursor": next_cursor}

    # --- changing --------------------------------------------------------

    def create(self, data, owner_team_id=None):
        require_writer(self.context, "opportunities")
        data = load(OpportunityCreate, data)
        require_visible_customer(self.session, self.context, data["customer_id"])
        owner_id = data.pop("owner_id", None) or self.context.user_id
        owner_team_id = owner_team_id if owner_team_id is not None else self.context.team_id
        self._check_owner(owner_id, owner_team_id)
        pipeline_id = data.pop("pipeline_id", None)
        pipeline = self._pipeline_for_new(pipeline_id)
        stage = self._stage_for_new(pipeline, data.pop("stage", None))
        probability = data.pop("probability", None)
        data["amount"] = round_money(data["amount"], data["currency"])
        now = utcnow()
        opportunity = Opportunity(
            **data,
            pipeline_id=pipeline.id,
            stage_id=stage.id,
            owner_id=owner_id,
            owner_team_id=owner_team_id,
            probability=stage.probability if probability is None else probability,
            probability_overridden=probability is not None,
            status="open",
            stage_entered_at=now,
            created_by=self.context.user_id,
            created_at=now,
            updated_at=now,
        )
        self.session.add(opportunity)
        self.session.flush()
        change = OpportunityStageChange(
            opportunity_id=opportunity.id, from_stage_id=None, to_stage_id=stage.id,
            changed_by=self.context.user_id, changed_at=now, seconds_in_previous_stage=None)
        self.session.add(change)
        self.session.flush()
        record_event(self.session, PRODUCER, "opportunity.created", {
            **event_data(opportunity, stage), "stage_change": stage_change_data(change, opportunity, None, stage)},
            self.context)
        count_after_commit(self.session, OPPORTUNITIES_CREATED)
        return to_dict(opportunity, stage)

    def update(self, opportunity_id, changes, expected_version=None):
        require_writer(self.context, "opportunities")
        changes = load(OpportunityUpdate, changes)
        opportunity = self.find(opportunity_id)
        check_version(opportunity, expected_version, f"Opportunity {opportunity_id}")
        self._refuse_closed(opportunity, "change")
        stage = self._stage(opportunity.stage_id)
        currency = changes.get("currency", opportunity.currency)
        amount = changes.get("amount", opportunity.amount)
        if round_money(amount, currency) != amount:
            raise ValidationFailed("The input is not valid.", {"amount": [NO_DECIMALS_FOR_CURRENCY]})
        if "amount" in changes:
            changes["amount"] = round_money(amount, currency)
        before = to_dict(opportunity, stage)
        if "probability" in changes:
            probability = changes.pop("probability")
            opportunity.probability_overridden = probability is not None
            opportunity.probability = stage.probability if probability is None else probability
        for field, value in changes.items():
            setattr(opportunity, field, value)
        opportunity.updated_at = utcnow()
        flush_versioned(self.session, f"Opportunity {opportunity_id}")
        after = to_dict(opportunity, stage)
        changed = {field: {"old": before[field], "new": after[field]} for field in after
                   if before[field] != after[field] and field not in ("updated_at", "version")}
        record_event(self.session, PRODUCER, "opportunity.updated",
                     {**event_data(opportunity, stage), "changes": changed}, self.context)
        return after

    def move(self, opportunity_id, data, expected_version=None):
        """Move to another stage of its pipeline; into won or lost closes it, out of them reopens it."""
        require_writer(self.context, "opportunities")
        data = load(StageMove, data)
        opportunity = self.find(opportunity_id)
        check_version(opportunity, expected_version, f"Opportunity {opportunity_id}")
        stages = {stage.key: stage for stage in stages_of(self.session, opportunity.pipeline_id)}
        target = stages.get(data["stage"])
        if target is None:
            raise ValidationFailed(f"This pipeline has no stage {data['stage']!r}.",
                                   {"stage": [f"Use one of: {', '.join(stages)}."]})
        if target.id == opportunity.stage_id:
            raise Conflict(f"Opportunity {opportunity_id} is already in stage {target.key!r}.")
        reopening = opportunity.status in CLOSED_OUTCOMES
        if reopening and self.context.role not in REOPENER_ROLES:
            raise Forbidden(f"Opportunity {opportunity_id} is {opportunity.status}; "
                            "only a manager or an admin can reopen it.")
        if target.outcome == "lost" and not data.get("lost_reason"):
            raise ValidationFailed(LOST_REASON_REQUIRED, {"lost_reason": [LOST_REASON_REQUIRED]})
        if target.outcome != "lost" and data.get("lost_reason"):
            raise ValidationFailed(LOST_REASON_ONLY_WHEN_LOST, {"lost_reason": [LOST_REASON_ONLY_WHEN_LOST]})
        source = next(stage for stage in stages.values() if stage.id == opportunity.stage_id)
        now = utcnow()
        seconds = max(0, int((now - opportunity.stage_entered_at).total_seconds()))
        opportunity.stage_id = target.id
        opportunity.stage_entered_at = opportunity.updated_at = now
        if not opportunity.probability_overridden:
            opportunity.probability = target.probability
        opportunity.status = target.outcome
        opportunity.closed_at = now if target.outcome in CLOSED_OUTCOMES else None
        opportunity.lost_reason = data.get("lost_reason") if target.outcome == "lost" else None
        flush_versioned(self.session, f"Opportunity {opportunity_id}")
        change = OpportunityStageChange(
            opportunity_id=opportunity.id, from_stage_id=source.id, to_stage_id=target.id, note=data.get("note"),
            changed_by=self.context.user_id, changed_at=now, seconds_in_previous_stage=seconds)
        self.session.add(change)
        self.session.flush()
        snapshot = event_data(opportunity, target)
        record_event(self.session, PRODUCER, "opportunity.stage_changed", {
            **snapshot, "from_stage": source.key, "to_stage": target.key, "seconds_in_previous_stage": seconds,
            "reopened": reopening, "note": data.get("note"),
            "stage_change": stage_change_data(change, opportunity, source, target)}, self.context)
        count_after_commit(self.session, OPPORTUNITY_STAGE_CHANGES.labels(target.outcome))
        if target.outcome in CLOSED_OUTCOMES:
            record_event(self.session, PRODUCER, f"opportunity.{target.outcome}", snapshot, self.context)
        return to_dict(opportunity, target)

    # --- internals -------------------------------------------------------

    def _check_owner(self, owner_id, owner_team_id):
        if self.context.role == "sales" and owner_id != self.context.user_id:
            raise ValidationFailed("Sales users own the opportunities they create.",
                                   {"owner_id": ["You may not assign opportunities to another user."]})
        if self.context.role == "manager" and owner_id != self.context.user_id \
                and owner_team_id != self.context.team_id:
            raise ValidationFailed("Managers give opportunities to their own team.",
                                   {"owner_id": ["This user is not in your team."]})

    def _pipeline_for_new(self, pipeline_id):
        if pipeline_id is None:
            return default_pipeline(self.session)
        try:
            return self.pipelines.find(pipeline_id)
        except NotFound:
            raise ValidationFailed("Unknown pipeline.", {"pipeline_id": ["Unknown pipeline."]})

    def _stage_for_new(self, pipeline, key):
        open_stages = [stage for stage in stages_of(self.session, pipeline.id) if stage.outcome == "open"]
        if key is None:
            return open_stages[0]
        for stage in open_stages:
            if stage.key == key:
                return stage
        # A deal starts open; it is won or lost by a move, which the history and events record.
        raise ValidationFailed(f"{key!r} is not an open stage of pipeline {pipeline.name!r}.",
                               {"stage": [f"Use one of: {', '.join(stage.key for stage in open_stages)}."]})

    def _refuse_closed(self, opportunity, action):
        if opportunity.status in CLOSED_OUTCOMES:
            raise Conflict(f"Opportunity {opportunity.id} is {opportunity.status}; reopen it to {action} it.")

    def _stage(self, stage_id):
        return self.session.get(PipelineStage, stage_id)

    def _stages(self, stage_ids):
        if not stage_ids:
            return {}
        return {stage.id: stage for stage in self.session.execute(
            select(PipelineStage).where(PipelineStage.id.in_(stage_ids))).scalars()}

    @staticmethod
    def _sort(sort):
        name, descending = parse_sort(sort, OPPORTUNITY_SORTABLE)
        if name == "expected_close_date":
            return (func.coalesce(Opportunity.expected_close_date, NO_CLOSE_DATE), descending,
                    lambda row: row.expected_close_date or NO_CLOSE_DATE)
        return getattr(Opportunity, name), descending, None
