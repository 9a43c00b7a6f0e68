"""Validation and output shapes of pipelines, their stages, and opportunities."""
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from crm_common.validation import PatchSchema

from sales.catalogue_schemas import Strict
from sales.money import Amount, Currency, round_money

OUTCOMES = ("open", "won", "lost")
CLOSED_OUTCOMES = ("won", "lost")
# status filter: one status, or every closed one.
STATUS_FILTERS = ("open", "won", "lost", "closed")
OPPORTUNITY_SORTABLE = ("created_at", "expected_close_date", "amount")
MAX_STAGES = 30
STAGE_KEY = validate.Regexp(r"^[a-z][a-z0-9_]{0,49}$",
                            error="Use 1-50 lower-case letters, digits or _, starting with a letter.")
PROBABILITY = validate.Range(min=0, max=100)
# How many opportunities each stage of a board shows (the counts and totals cover all).
BOARD_DEFAULT_PER_STAGE = 20
BOARD_MAX_PER_STAGE = 100

ONE_WON_ONE_LOST = "A pipeline has exactly one won stage and one lost stage."
NEEDS_OPEN_STAGE = "A pipeline needs at least one open stage."
DUPLICATE_KEYS = "Stage keys must be unique within a pipeline."
NO_DECIMALS_FOR_CURRENCY = "Too many decimals for this currency."
LOST_REASON_REQUIRED = "Say why the opportunity was lost."
LOST_REASON_ONLY_WHEN_LOST = "Only a move to a lost stage takes a lost_reason."
NOT_BEFORE_CLOSE_FROM = "Must not be before close_from."
NOT_BELOW_AMOUNT_MIN = "Must not be below amount_min."


# --- pipelines -----------------------------------------------------------------

class StageIn(Strict):
    key = fields.String(required=True, validate=STAGE_KEY)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    probability = fields.Integer(required=True, strict=True, validate=PROBABILITY)
    outcome = fields.String(load_default="open", validate=validate.OneOf(OUTCOMES))


class PipelineCreate(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    stages = fields.List(fields.Nested(StageIn), required=True, validate=validate.Length(min=3, max=MAX_STAGES))

    @validates_schema
    def _a_working_pipeline(self, data, **kwargs):
        stages = data.get("stages") or []
        outcomes = [stage["outcome"] for stage in stages]
        if outcomes.count("won") != 1 or outcomes.count("lost") != 1:
            raise ValidationError({"stages": [ONE_WON_ONE_LOST]})
        if "open" not in outcomes:
            raise ValidationError({"stages": [NEEDS_OPEN_STAGE]})
        keys = [stage["key"] for stage in stages]
        if len(set(keys)) != len(keys):
            raise ValidationError({"stages": [DUPLICATE_KEYS]})


class StageAdd(Strict):
    """A new open stage; won and lost exist once per pipeline already."""

    key = fields.String(required=True, validate=STAGE_KEY)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    probability = fields.Integer(required=True, strict=True, validate=PROBABILITY)
    # 0-based place in the pipeline; the stages from there on move one down.
    # Absent: after the last open stage (before won and lost).
    position = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_STAGES))


class StageOut(Schema):
    id = fields.String()
    key = fields.String()
    name = fields.String()
    position = fields.Integer()
    probability = fields.Integer()
    outcome = fields.String()


class PipelineOut(Schema):
    id = fields.String()
    name = fields.String()
    is_default = fields.Boolean()
    created_at = fields.DateTime()
    stages = fields.List(fields.Nested(StageOut))


class BoardQuery(Strict):
    per_stage = fields.Integer(load_default=BOARD_DEFAULT_PER_STAGE,
                               validate=validate.Range(min=0, max=BOARD_MAX_PER_STAGE))


# --- opportunities -----------------------------------------------------------------

def plain_ids(data, *names):
    """UUID fields as the strings the tables hold."""
    for name in names:
        if data.get(name) is not None:
            data[name] = str(data[name])
    return data


def check_minor_unit(data):
    """1234.5 JPY is not an amount: refused rather than silently rounded."""
    if "amount" in data and "currency" in data and \
            round_money(data["amount"], data["currency"]) != data["amount"]:
        raise ValidationError({"amount": [NO_DECIMALS_FOR_CURRENCY]})


class OpportunityFields(Strict):
    title = fields.String(validate=validate.Length(min=1, max=200))
    amount = Amount()
    currency = Currency()
    expected_close_date = fields.Date(allow_none=True)
    # Set by hand, it sticks across stage moves; null gives it back to the stage.
    probability = fields.Integer(allow_none=True, strict=True, validate=PROBABILITY)
    source = fields.String(allow_none=True, validate=validate.Length(max=100))
    next_step = fields.String(allow_none=True, validate=validate.Length(max=500))


class OpportunityCreate(OpportunityFields):
    customer_id = fields.UUID(required=True)
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    amount = Amount(required=True)
    currency = Currency(required=True)
    owner_id = fields.UUID(allow_none=True)
    pipeline_id = fields.UUID(allow_none=True)
    # A stage key of the pipeline; absent: its first open stage.
    stage = fields.String(allow_none=True, validate=validate.Length(min=1, max=50))

    @post_load
    def _plain(self, data, **kwargs):
        check_minor_unit(data)
        return plain_ids(data, "customer_id", "owner_id", "pipeline_id")


class OpportunityUpdate(OpportunityFields, PatchSchema):
    """PATCH: every field optional, at least one. The stage moves through POST .../stage."""


class StageMove(Strict):
    stage = fields.String(required=True, validate=validate.Length(min=1, max=50))
    note = fields.String(allow_none=True, validate=validate.Length(max=10000))
    lost_reason = fields.String(allow_none=True, validate=validate.Length(max=500))


class OpportunityFilters(Strict):
    stage = fields.String(validate=validate.Length(min=1, max=50))
    pipeline_id = fields.UUID()
    owner_id = fields.UUID()
    customer_id = fields.UUID()
    amount_min = Amount()
    amount_max = Amount()
    close_from = fields.Date()
    close_to = fields.Date()
    status = fields.String(validate=validate.OneOf(STATUS_FILTERS))

    @post_load
    def _consistent(self, data, **kwargs):
        if "close_from" in data and "close_to" in data and data["close_from"] > data["close_to"]:
            raise ValidationError({"close_to": [NOT_BEFORE_CLOSE_FROM]})
        if "amount_min" in data and "amount_max" in data and data["amount_min"] > data["amount_max"]:
            raise ValidationError({"amount_max": [NOT_BELOW_AMOUNT_MIN]})
        return plain_ids(data, "pipeline_id", "owner_id", "customer_id")


class OpportunityOut(Schema):
    id = fields.String()
    customer_id = fields.String()
    pipeline_id = fields.String()
    stage_id = fields.String()
    stage = fields.String()  # the stage's key; filled in by the domain
    title = fields.String()
    amount = Amount()
    currency = fields.String()
    owner_id = fields.String(allow_none=True)
    owner_team_id = fields.String(allow_none=True)
    expected_close_date = fields.Date(allow_none=True)
    probability = fields.Integer()
    probability_overridden = fields.Boolean()
    source = fields.String(allow_none=True)
    next_step = fields.String(allow_none=True)
    lost_reason = fields.String(allow_none=True)
    status = fields.String()
    stage_entered_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    version = fields.Integer()


class StageChangeOut(Schema):
    id = fields.Integer()
    opportunity_id = fields.String()
    from_stage = fields.String(allow_none=True)  # None: the opportunity was created in to_stage
    to_stage = fields.String()
    note = fields.String(allow_none=True)
    changed_by = fields.String(allow_none=True)
    changed_at = fields.DateTime()
    seconds_in_previous_stage = fields.Integer(allow_none=True)
